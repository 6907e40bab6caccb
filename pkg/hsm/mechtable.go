package hsm

import (
	"fmt"
	"sort"
	"strings"

	"github.com/qpki/qpki/pkg/algo"
)

// DefaultMechanisms names the mechanism table used when a configuration does
// not choose one.
const DefaultMechanisms = "pkcs11-3.2"

// PQCMechanisms are the PKCS#11 identifiers a token uses for one
// post-quantum algorithm. Classical algorithms need no table: their
// identifiers have been standard since PKCS#11 2.x (3.0 for EdDSA).
type PQCMechanisms struct {
	KeyType      uint // CKK_ value of CKA_KEY_TYPE
	ParameterSet uint // value of the table's parameter-set attribute
	KeyGen       uint // CKM_ key-pair generation mechanism
	Sign         uint // CKM_ signature mechanism; 0 for a KEM
	Encapsulate  uint // CKM_ encapsulation mechanism; 0 for a signature algorithm
}

// MechanismTable maps abstract post-quantum operations to one vendor's
// PKCS#11 identifiers, so that supporting a new vendor is a table entry.
type MechanismTable struct {
	Name string
	// Source says where the values were confirmed.
	Source string
	// ParameterSetAttribute is the attribute that carries the parameter
	// set (CKA_PARAMETER_SET in PKCS#11 3.2).
	ParameterSetAttribute uint
	Algorithms            map[algo.Algorithm]PQCMechanisms
}

// For returns the identifiers for alg.
func (t *MechanismTable) For(alg algo.Algorithm) (PQCMechanisms, bool) {
	m, ok := t.Algorithms[alg]
	return m, ok
}

// algorithmFor returns the algorithm whose key type and parameter set match.
func (t *MechanismTable) algorithmFor(keyType, paramSet uint) (algo.Algorithm, bool) {
	for a, m := range t.Algorithms {
		if m.KeyType == keyType && m.ParameterSet == paramSet {
			return a, true
		}
	}
	return "", false
}

// isPQCKeyType reports whether keyType is a post-quantum key type of this table.
func (t *MechanismTable) isPQCKeyType(keyType uint) bool {
	for _, m := range t.Algorithms {
		if m.KeyType == keyType {
			return true
		}
	}
	return false
}

var mechanismTables = map[string]*MechanismTable{}

func registerTable(t *MechanismTable) { mechanismTables[t.Name] = t }

// LookupMechanismTable returns the table a configuration names.
func LookupMechanismTable(name string) (*MechanismTable, error) {
	if name == "" {
		name = DefaultMechanisms
	}
	t, ok := mechanismTables[name]
	if !ok {
		return nil, fmt.Errorf("unknown mechanism table %q (known: %s)", name, strings.Join(MechanismTableNames(), ", "))
	}
	return t, nil
}

// MechanismTableNames lists the known tables.
func MechanismTableNames() []string {
	names := make([]string, 0, len(mechanismTables))
	for n := range mechanismTables {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func init() {
	// The standard table: every value is from the OASIS PKCS#11 3.2 header.
	std := &MechanismTable{
		Name:                  "pkcs11-3.2",
		Source:                "OASIS PKCS#11 3.2 pkcs11t.h (confirmed)",
		ParameterSetAttribute: CKA_PARAMETER_SET,
		Algorithms:            map[algo.Algorithm]PQCMechanisms{},
	}
	for name, ps := range map[algo.Algorithm]uint{
		"ml-dsa-44": CKP_ML_DSA_44, "ml-dsa-65": CKP_ML_DSA_65, "ml-dsa-87": CKP_ML_DSA_87,
	} {
		std.Algorithms[name] = PQCMechanisms{KeyType: CKK_ML_DSA, ParameterSet: ps, KeyGen: CKM_ML_DSA_KEY_PAIR_GEN, Sign: CKM_ML_DSA}
	}
	for name, ps := range map[algo.Algorithm]uint{
		"slh-dsa-sha2-128s": CKP_SLH_DSA_SHA2_128S, "slh-dsa-shake-128s": CKP_SLH_DSA_SHAKE_128S,
		"slh-dsa-sha2-128f": CKP_SLH_DSA_SHA2_128F, "slh-dsa-shake-128f": CKP_SLH_DSA_SHAKE_128F,
		"slh-dsa-sha2-192s": CKP_SLH_DSA_SHA2_192S, "slh-dsa-shake-192s": CKP_SLH_DSA_SHAKE_192S,
		"slh-dsa-sha2-192f": CKP_SLH_DSA_SHA2_192F, "slh-dsa-shake-192f": CKP_SLH_DSA_SHAKE_192F,
		"slh-dsa-sha2-256s": CKP_SLH_DSA_SHA2_256S, "slh-dsa-shake-256s": CKP_SLH_DSA_SHAKE_256S,
		"slh-dsa-sha2-256f": CKP_SLH_DSA_SHA2_256F, "slh-dsa-shake-256f": CKP_SLH_DSA_SHAKE_256F,
	} {
		std.Algorithms[name] = PQCMechanisms{KeyType: CKK_SLH_DSA, ParameterSet: ps, KeyGen: CKM_SLH_DSA_KEY_PAIR_GEN, Sign: CKM_SLH_DSA}
	}
	for name, ps := range map[algo.Algorithm]uint{
		"ml-kem-512": CKP_ML_KEM_512, "ml-kem-768": CKP_ML_KEM_768, "ml-kem-1024": CKP_ML_KEM_1024,
	} {
		std.Algorithms[name] = PQCMechanisms{KeyType: CKK_ML_KEM, ParameterSet: ps, KeyGen: CKM_ML_KEM_KEY_PAIR_GEN, Encapsulate: CKM_ML_KEM}
	}
	registerTable(std)

	// Thales Luna with the PQC functionality module (the FM that predates
	// native support in firmware 7.9). Values from pqcdefs.h in Thales's
	// public luna-openssl-4-pqc repository ("customer defined" range
	// 0xC0000000); not checked against a device. Only ML-DSA is listed:
	// the FM's ML-KEM goes through C_DeriveKey with its own parameter
	// structures rather than C_EncapsulateKey, which qpki does not speak,
	// and its SPHINCS+ is not FIPS 205 SLH-DSA.
	const (
		lunaCustom          = 0xC0000000
		lunaCKAKeyParams    = lunaCustom + 0x01
		lunaCKKMLDSA        = lunaCustom + 0x08
		lunaCKMMLDSAKeyPair = lunaCustom + 0x65
		lunaCKMMLDSA        = lunaCustom + 0x66
	)
	luna := &MechanismTable{
		Name:                  "thales-luna-pqc-fm",
		Source:                "Thales luna-openssl-4-pqc lunaProvider/pqcdefs.h (public vendor source; not checked against a device)",
		ParameterSetAttribute: lunaCKAKeyParams,
		Algorithms: map[algo.Algorithm]PQCMechanisms{
			"ml-dsa-44": {KeyType: lunaCKKMLDSA, ParameterSet: 0x01, KeyGen: lunaCKMMLDSAKeyPair, Sign: lunaCKMMLDSA},
			"ml-dsa-65": {KeyType: lunaCKKMLDSA, ParameterSet: 0x02, KeyGen: lunaCKMMLDSAKeyPair, Sign: lunaCKMMLDSA},
			"ml-dsa-87": {KeyType: lunaCKKMLDSA, ParameterSet: 0x03, KeyGen: lunaCKMMLDSAKeyPair, Sign: lunaCKMMLDSA},
		},
	}
	registerTable(luna)
}
