package hsmtest

import "testing"

func TestParseSlots(t *testing.T) {
	out := []byte(`Available slots:
Slot 857544974
    Slot info:
        Description:      SoftHSM slot ID 0x331d190e
        Token present:    yes
    Token info:
        Serial number:    0c6ff6a1b31d190e
        Initialized:      yes
        Label:            T1
Slot 2
    Slot info:
        Description:      SoftHSM slot ID 0x2
    Token info:
        Serial number:
        Initialized:      no
        Label:
`)
	got := parseSlots(out)
	if len(got) != 1 || got[0] != (Token{Label: "T1", Serial: "0c6ff6a1b31d190e", Slot: 857544974}) {
		t.Errorf("parseSlots = %+v", got)
	}
}
