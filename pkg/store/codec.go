package store

import (
	"encoding/json"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// Certificate and job records are kept in bbolt as CBOR maps under the
// same names as their JSON fields. JSON cost 30 µs to write and read back
// a job record (its payload and a certificate's DER go through base64),
// about a tenth of the pipeline's CPU per certificate; CBOR costs 6.
// Records written as JSON by earlier versions are still read.

var (
	recordEnc = func() cbor.EncMode {
		em, err := cbor.EncOptions{Time: cbor.TimeRFC3339Nano}.EncMode()
		if err != nil {
			panic(err)
		}
		return em
	}()
	recordDec = func() cbor.DecMode {
		dm, err := cbor.DecOptions{MaxNestedLevels: 8, MaxArrayElements: 1 << 16, MaxMapPairs: 64}.DecMode()
		if err != nil {
			panic(err)
		}
		return dm
	}()
)

// encodeRecord encodes a record for the store.
func encodeRecord(v any) ([]byte, error) {
	b, err := recordEnc.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("store: encoding %T: %w", v, err)
	}
	return b, nil
}

// decodeRecord decodes a record written by encodeRecord, or a JSON one
// (a JSON record is an object: it starts with '{', which a CBOR map never
// does).
func decodeRecord(data []byte, v any) error {
	var err error
	if len(data) > 0 && data[0] == '{' {
		err = json.Unmarshal(data, v)
	} else {
		err = recordDec.Unmarshal(data, v)
	}
	if err != nil {
		return fmt.Errorf("store: decoding %T: %w", v, err)
	}
	return nil
}
