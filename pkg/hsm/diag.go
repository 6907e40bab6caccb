package hsm

import (
	"crypto"
	"crypto/rand"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/miekg/pkcs11"
	"github.com/qpki/qpki/pkg/algo"
)

// The diagnostics below back `qpki hsm list|info|mechanisms|test`. Each has
// a struct form for --json and a writer form for people. None of them needs
// a PIN except SelfTest.

// ModuleReport describes a PKCS#11 module.
type ModuleReport struct {
	Path            string `json:"path"`
	CryptokiVersion string `json:"cryptoki_version"`
	Manufacturer    string `json:"manufacturer"`
	Description     string `json:"description"`
	LibraryVersion  string `json:"library_version"`
}

// TokenReport describes a token.
type TokenReport struct {
	Label           string   `json:"label"`
	Serial          string   `json:"serial"`
	Manufacturer    string   `json:"manufacturer"`
	Model           string   `json:"model"`
	HardwareVersion string   `json:"hardware_version"`
	FirmwareVersion string   `json:"firmware_version"`
	Flags           []string `json:"flags"`
	Sessions        string   `json:"sessions"`    // open / max
	RWSessions      string   `json:"rw_sessions"` // open / max
	PINLength       string   `json:"pin_length"`  // min-max
}

// SlotReport describes a slot and the token in it, if any.
type SlotReport struct {
	SlotID       uint         `json:"slot_id"`
	Description  string       `json:"description"`
	Manufacturer string       `json:"manufacturer"`
	Flags        []string     `json:"flags"`
	Token        *TokenReport `json:"token,omitempty"`
}

// SlotsReport is the result of `qpki hsm list`.
type SlotsReport struct {
	Module ModuleReport `json:"module"`
	Slots  []SlotReport `json:"slots"`
}

// MechanismReport describes one mechanism of a token.
type MechanismReport struct {
	Value      string   `json:"value"`
	Name       string   `json:"name"`
	MinKeySize uint     `json:"min_key_size"`
	MaxKeySize uint     `json:"max_key_size"`
	Flags      []string `json:"flags"`
}

// PQCSupport tells whether a token lists the mechanisms that the
// configured table gives for one post-quantum algorithm.
type PQCSupport struct {
	Algorithm string `json:"algorithm"`
	KeyGen    string `json:"keygen"`
	Operation string `json:"operation"`
	Available bool   `json:"available"`
}

// InfoReport is the result of `qpki hsm info`.
type InfoReport struct {
	Module          ModuleReport `json:"module"`
	SlotID          uint         `json:"slot_id"`
	Token           TokenReport  `json:"token"`
	MechanismTable  string       `json:"mechanism_table"`
	TableSource     string       `json:"mechanism_table_source"`
	MechanismCount  int          `json:"mechanism_count"`
	PostQuantum     []PQCSupport `json:"post_quantum"`
	ClassicalMissed []string     `json:"classical_mechanisms_missing,omitempty"`
}

func version(v pkcs11.Version) string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

func countOf(n uint) string {
	switch n {
	case pkcs11.CK_UNAVAILABLE_INFORMATION:
		return "?"
	case pkcs11.CK_EFFECTIVELY_INFINITE:
		return "unlimited"
	}
	return fmt.Sprint(n)
}

func moduleReport(m *module) ModuleReport {
	return ModuleReport{
		Path:            m.path,
		CryptokiVersion: version(m.info.CryptokiVersion),
		Manufacturer:    trimField(m.info.ManufacturerID),
		Description:     trimField(m.info.LibraryDescription),
		LibraryVersion:  version(m.info.LibraryVersion),
	}
}

func tokenReport(ti pkcs11.TokenInfo) TokenReport {
	return TokenReport{
		Label:           trimField(ti.Label),
		Serial:          trimField(ti.SerialNumber),
		Manufacturer:    trimField(ti.ManufacturerID),
		Model:           trimField(ti.Model),
		HardwareVersion: version(ti.HardwareVersion),
		FirmwareVersion: version(ti.FirmwareVersion),
		Flags:           flagList(ti.Flags, tokenFlagNames),
		Sessions:        countOf(ti.SessionCount) + " / " + countOf(ti.MaxSessionCount),
		RWSessions:      countOf(ti.RwSessionCount) + " / " + countOf(ti.MaxRwSessionCount),
		PINLength:       fmt.Sprintf("%d-%d", ti.MinPinLen, ti.MaxPinLen),
	}
}

// Slots reports every slot of the module at libPath.
func Slots(libPath string) (*SlotsReport, error) {
	m, err := openModule(libPath)
	if err != nil {
		return nil, fmt.Errorf("hsm: %v", err)
	}
	defer m.release()
	ids, err := m.ctx.GetSlotList(false)
	if err != nil {
		return nil, fmt.Errorf("hsm: PKCS#11 module %s: C_GetSlotList: %v", m.path, err)
	}
	r := &SlotsReport{Module: moduleReport(m), Slots: []SlotReport{}}
	for _, id := range ids {
		si, err := m.ctx.GetSlotInfo(id)
		if err != nil {
			r.Slots = append(r.Slots, SlotReport{SlotID: id, Description: "C_GetSlotInfo: " + err.Error()})
			continue
		}
		sr := SlotReport{
			SlotID:       id,
			Description:  trimField(si.SlotDescription),
			Manufacturer: trimField(si.ManufacturerID),
			Flags:        flagList(si.Flags, slotFlagNames),
		}
		if si.Flags&pkcs11.CKF_TOKEN_PRESENT != 0 {
			if ti, err := m.ctx.GetTokenInfo(id); err == nil {
				tr := tokenReport(ti)
				sr.Token = &tr
			}
		}
		r.Slots = append(r.Slots, sr)
	}
	return r, nil
}

// ListSlots writes the module's slots and tokens to w.
func ListSlots(w io.Writer, libPath string) error {
	r, err := Slots(libPath)
	if err != nil {
		return err
	}
	writeModule(w, r.Module)
	if len(r.Slots) == 0 {
		fmt.Fprintln(w, "no slots")
	}
	for _, s := range r.Slots {
		fmt.Fprintf(w, "\nslot %d: %s\n", s.SlotID, s.Description)
		fmt.Fprintf(w, "  flags:    %s\n", strings.Join(s.Flags, ", "))
		if s.Token == nil {
			fmt.Fprintln(w, "  token:    none")
			continue
		}
		writeToken(w, *s.Token)
	}
	return nil
}

func writeModule(w io.Writer, m ModuleReport) {
	fmt.Fprintf(w, "module:   %s\n", m.Path)
	fmt.Fprintf(w, "  library:  %s %s (%s), Cryptoki %s\n", m.Description, m.LibraryVersion, m.Manufacturer, m.CryptokiVersion)
}

func writeToken(w io.Writer, t TokenReport) {
	fmt.Fprintf(w, "  token:    %q\n", t.Label)
	fmt.Fprintf(w, "  serial:   %s\n", t.Serial)
	fmt.Fprintf(w, "  model:    %s (%s), hardware %s, firmware %s\n", t.Model, t.Manufacturer, t.HardwareVersion, t.FirmwareVersion)
	fmt.Fprintf(w, "  flags:    %s\n", strings.Join(t.Flags, ", "))
	fmt.Fprintf(w, "  sessions: %s (read/write %s), PIN length %s\n", t.Sessions, t.RWSessions, t.PINLength)
}

// probe opens the configuration's module and selects its token without
// logging in.
func probe(cfg *Config) (*module, presentToken, error) {
	m, err := openModule(cfg.PKCS11.Lib)
	if err != nil {
		return nil, presentToken{}, fmt.Errorf("hsm: %v", err)
	}
	pt, err := selectToken(m, cfg)
	if err != nil {
		m.release()
		return nil, presentToken{}, fmt.Errorf("hsm: %v", err)
	}
	return m, pt, nil
}

// MechanismList reports the token's mechanisms whose name contains filter
// (case-insensitive; "" for all), sorted by value.
func MechanismList(cfg *Config, filter string) ([]MechanismReport, error) {
	m, pt, err := probe(cfg)
	if err != nil {
		return nil, err
	}
	defer m.release()
	ms, err := m.ctx.GetMechanismList(pt.slot)
	if err != nil {
		return nil, fmt.Errorf("hsm: token %q: C_GetMechanismList: %v", pt.label(), err)
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Mechanism < ms[j].Mechanism })
	filter = strings.ToUpper(filter)
	out := []MechanismReport{}
	for _, mech := range ms {
		name := MechanismName(mech.Mechanism)
		if filter != "" && !strings.Contains(strings.ToUpper(name), filter) {
			continue
		}
		r := MechanismReport{Value: fmt.Sprintf("0x%08X", mech.Mechanism), Name: name}
		if mi, err := m.ctx.GetMechanismInfo(pt.slot, []*pkcs11.Mechanism{mech}); err == nil {
			r.MinKeySize, r.MaxKeySize = mi.MinKeySize, mi.MaxKeySize
			r.Flags = flagList(mi.Flags, mechanismFlagNames)
		}
		out = append(out, r)
	}
	return out, nil
}

// Mechanisms writes the token's mechanisms (see MechanismList) to w.
func Mechanisms(w io.Writer, cfg *Config, filter string) error {
	ms, err := MechanismList(cfg, filter)
	if err != nil {
		return err
	}
	if len(ms) == 0 {
		if filter != "" {
			fmt.Fprintf(w, "no mechanism matches %q\n", filter)
		} else {
			fmt.Fprintln(w, "the token lists no mechanisms")
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VALUE\tNAME\tKEY SIZES\tFLAGS")
	for _, m := range ms {
		fmt.Fprintf(tw, "%s\t%s\t%d-%d\t%s\n", m.Value, m.Name, m.MinKeySize, m.MaxKeySize, strings.Join(m.Flags, ","))
	}
	return tw.Flush()
}

// TokenInfo reports the configuration's module and token, and which
// algorithms the token can serve.
func TokenInfo(cfg *Config) (*InfoReport, error) {
	table, err := cfg.MechanismTable()
	if err != nil {
		return nil, fmt.Errorf("hsm: %v", err)
	}
	m, pt, err := probe(cfg)
	if err != nil {
		return nil, err
	}
	defer m.release()
	have := map[uint]bool{}
	ms, err := m.ctx.GetMechanismList(pt.slot)
	if err != nil {
		return nil, fmt.Errorf("hsm: token %q: C_GetMechanismList: %v", pt.label(), err)
	}
	for _, mech := range ms {
		have[mech.Mechanism] = true
	}
	r := &InfoReport{
		Module:         moduleReport(m),
		SlotID:         pt.slot,
		Token:          tokenReport(pt.info),
		MechanismTable: table.Name,
		TableSource:    table.Source,
		MechanismCount: len(ms),
		PostQuantum:    []PQCSupport{},
	}
	for _, mech := range []uint{pkcs11.CKM_EC_KEY_PAIR_GEN, pkcs11.CKM_ECDSA, pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN,
		pkcs11.CKM_RSA_PKCS, pkcs11.CKM_RSA_PKCS_PSS, CKM_EC_EDWARDS_KEY_PAIR_GEN, CKM_EDDSA} {
		if !have[mech] {
			r.ClassicalMissed = append(r.ClassicalMissed, MechanismName(mech))
		}
	}
	algs := make([]string, 0, len(table.Algorithms))
	for a := range table.Algorithms {
		algs = append(algs, string(a))
	}
	sort.Strings(algs)
	for _, a := range algs {
		pm := table.Algorithms[algo.Algorithm(a)]
		op := pm.Sign
		if op == 0 {
			op = pm.Encapsulate
		}
		r.PostQuantum = append(r.PostQuantum, PQCSupport{
			Algorithm: a,
			KeyGen:    MechanismName(pm.KeyGen),
			Operation: MechanismName(op),
			Available: have[pm.KeyGen] && have[op],
		})
	}
	return r, nil
}

// Info writes TokenInfo to w.
func Info(w io.Writer, cfg *Config) error {
	r, err := TokenInfo(cfg)
	if err != nil {
		return err
	}
	writeModule(w, r.Module)
	fmt.Fprintf(w, "slot:     %d\n", r.SlotID)
	writeToken(w, r.Token)
	fmt.Fprintf(w, "mechanisms: %d listed; table %q (%s)\n", r.MechanismCount, r.MechanismTable, r.TableSource)
	if len(r.ClassicalMissed) > 0 {
		fmt.Fprintf(w, "  classical mechanisms missing: %s\n", strings.Join(r.ClassicalMissed, ", "))
	}
	var avail, missing []string
	for _, p := range r.PostQuantum {
		if p.Available {
			avail = append(avail, p.Algorithm)
		} else {
			missing = append(missing, p.Algorithm)
		}
	}
	if len(avail) > 0 {
		fmt.Fprintf(w, "  post-quantum available: %s\n", strings.Join(avail, ", "))
	}
	if len(missing) > 0 {
		fmt.Fprintf(w, "  post-quantum not offered: %s\n", strings.Join(missing, ", "))
	}
	return nil
}

// SelfTest walks through what signing needs — load the module, find the
// token, open a session, log in, generate a session-only key (CKA_TOKEN
// false), sign and verify, log out — printing each step to w. The error
// names the step that failed. The final logout ends the process's login on
// that token (PKCS#11 logins are per application), so run it on its own,
// as `qpki hsm test` does, not beside a signing server in one process.
func SelfTest(w io.Writer, cfg *Config) error {
	const steps = 7
	n := 0
	step := func(desc string, f func() (string, error)) error {
		n++
		fmt.Fprintf(w, "[%d/%d] %s ... ", n, steps, desc)
		detail, err := f()
		if err != nil {
			fmt.Fprintf(w, "FAILED\n      %v\n", err)
			return fmt.Errorf("hsm self-test failed at step %d (%s): %w", n, desc, err)
		}
		if detail != "" {
			fmt.Fprintf(w, "ok (%s)\n", detail)
		} else {
			fmt.Fprintln(w, "ok")
		}
		return nil
	}
	table, err := cfg.MechanismTable()
	if err != nil {
		return fmt.Errorf("hsm: %v", err)
	}

	var m *module
	if err := step("load module "+cfg.PKCS11.Lib, func() (string, error) {
		var err error
		m, err = openModule(cfg.PKCS11.Lib)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%s %s, Cryptoki %s", trimField(m.info.LibraryDescription), version(m.info.LibraryVersion), version(m.info.CryptokiVersion)), nil
	}); err != nil {
		return err
	}
	defer m.release()

	var pt presentToken
	if err := step("find token ("+cfg.TokenDescription()+")", func() (string, error) {
		var err error
		pt, err = selectToken(m, cfg)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%q, serial %s, slot %d", pt.label(), pt.serial(), pt.slot), nil
	}); err != nil {
		return err
	}

	ctx := m.ctx
	var sess pkcs11.SessionHandle
	if err := step("open session", func() (string, error) {
		var err error
		sess, err = ctx.OpenSession(pt.slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		return "", err
	}); err != nil {
		return err
	}
	defer ctx.CloseSession(sess) // also destroys the session key

	st := &tokenState{
		mod: m, cfg: cfg, slot: pt.slot, label: pt.label(), serial: pt.serial(), info: pt.info,
		table: table, mechs: map[uint]bool{}, pool: newPool(1), signNice: cfg.PKCS11.signNice(),
	}
	if ms, err := ctx.GetMechanismList(pt.slot); err == nil {
		for _, mech := range ms {
			st.mechs[mech.Mechanism] = true
		}
	}
	if err := step("log in", func() (string, error) {
		if pt.info.Flags&pkcs11.CKF_LOGIN_REQUIRED == 0 {
			return "the token requires no login", nil
		}
		pin, source, err := cfg.pinFor(pt)
		if err != nil {
			return "", err
		}
		st.pin, st.pinSource = pin, source
		if err := st.login(sess); err != nil {
			return "", err
		}
		return "PIN from " + st.pinSource, nil
	}); err != nil {
		return err
	}
	st.loggedIn = true

	alg := algo.ECDSAP256
	switch {
	case st.mechs[pkcs11.CKM_EC_KEY_PAIR_GEN] && st.mechs[pkcs11.CKM_ECDSA]:
	case st.mechs[pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN] && st.mechs[pkcs11.CKM_RSA_PKCS]:
		alg = algo.RSA2048
	case st.mechs[CKM_EC_EDWARDS_KEY_PAIR_GEN] && st.mechs[CKM_EDDSA]:
		alg = algo.Ed25519
	}
	var key *Key
	if err := step(fmt.Sprintf("generate a session key (%s, CKA_TOKEN false)", alg), func() (string, error) {
		var err error
		key, err = st.generate(sess, alg, "qpki-self-test", randomID(), false)
		if err != nil {
			return "", err
		}
		return "id " + key.IDHex(), nil
	}); err != nil {
		return err
	}

	if err := step("sign and verify", func() (string, error) {
		tok := &Token{st: st}
		signer, err := tok.signer(key, alg, nil)
		if err != nil {
			return "", err
		}
		// The signer takes its session from the pool: lend it ours.
		st.pool.idle = []pkcs11.SessionHandle{sess}
		defer st.pool.drain()
		msg := []byte("qpki hsm self-test")
		var sig []byte
		if h := algo.HashFor(alg); h != 0 {
			d := h.New()
			d.Write(msg)
			sig, err = signer.Sign(rand.Reader, d.Sum(nil), h)
		} else {
			sig, err = signer.Sign(rand.Reader, msg, crypto.Hash(0))
		}
		if err != nil {
			return "", err
		}
		if err := algo.VerifyDigest(signer.Public(), alg, msg, sig, false); err != nil {
			return "", fmt.Errorf("the token's signature does not verify: %v", err)
		}
		return fmt.Sprintf("%d-byte signature verified in software; %s", len(sig), signPriority(st.signNice)), nil
	}); err != nil {
		return err
	}

	return step("log out", func() (string, error) {
		if pt.info.Flags&pkcs11.CKF_LOGIN_REQUIRED == 0 {
			return "not logged in", nil
		}
		if err := ctx.Logout(sess); err != nil && !isCKR(err, pkcs11.CKR_USER_NOT_LOGGED_IN) {
			return "", err
		}
		return "", nil
	})
}

// signPriority says whether signing threads get the priority sign_nice
// asks for.
func signPriority(nice int) string {
	if nice == 0 {
		return "sign_nice 0: signing threads keep their priority"
	}
	if err := priorityProbe(nice); err != nil {
		return fmt.Sprintf("signing threads keep their priority, sign_nice %d refused (%v)", nice, err)
	}
	return fmt.Sprintf("signing threads run at nice %+d", nice)
}
