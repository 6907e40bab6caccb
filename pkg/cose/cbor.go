package cose

import (
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// decMode parses untrusted input: bounded nesting, array and map sizes, no
// duplicate map keys, no indefinite lengths, integers as int64.
var decMode = func() cbor.DecMode {
	dm, err := cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels:  16,
		MaxArrayElements: 1024,
		MaxMapPairs:      256,
		IndefLength:      cbor.IndefLengthForbidden,
		IntDec:           cbor.IntDecConvertSignedOrFail,
		MapKeyByteString: cbor.MapKeyByteStringForbidden,
	}.DecMode()
	if err != nil {
		panic(err)
	}
	return dm
}()

// encMode writes Core Deterministic Encoding (RFC 8949 §4.2.1), which the
// protected header and the Sig_structure need to be reproducible.
var encMode = func() cbor.EncMode {
	em, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(err)
	}
	return em
}()

// CBOR major types.
const (
	cborUint   = 0
	cborNint   = 1
	cborBytes  = 2
	cborText   = 3
	cborArray  = 4
	cborMap    = 5
	cborTag    = 6
	cborSimple = 7
)

func majorType(raw []byte) int {
	if len(raw) == 0 {
		return -1
	}
	return int(raw[0] >> 5)
}

func isNull(raw []byte) bool { return len(raw) == 1 && raw[0] == 0xf6 }

func typeName(raw []byte) string {
	switch majorType(raw) {
	case cborUint:
		return "unsigned integer"
	case cborNint:
		return "negative integer"
	case cborBytes:
		return "byte string"
	case cborText:
		return "text string"
	case cborArray:
		return "array"
	case cborMap:
		return "map"
	case cborTag:
		return "tag"
	case cborSimple:
		return "simple value or float"
	}
	return "empty item"
}

// decodeBytes decodes a byte string, refusing the text strings the decoder
// would otherwise accept into a []byte.
func decodeBytes(raw []byte, out *[]byte) error {
	if majorType(raw) != cborBytes {
		return fmt.Errorf("want a byte string, got a CBOR %s", typeName(raw))
	}
	return decMode.Unmarshal(raw, out)
}

func decodeInt(raw []byte, out *int64) error {
	if t := majorType(raw); t != cborUint && t != cborNint {
		return fmt.Errorf("want an integer, got a CBOR %s", typeName(raw))
	}
	return decMode.Unmarshal(raw, out)
}
