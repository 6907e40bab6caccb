// Package codec encodes qpki's stored records and queue messages as CBOR
// maps keyed by their JSON field names (the `json` struct tags), and
// decodes them, or the JSON that earlier versions wrote.
//
// JSON sends a certificate, a CSR or a nested payload through base64 and
// scans every byte twice to decode it; CBOR carries bytes as they are.
// For one certificate the pipeline writes and reads a job, its payload, a
// result and its payload, and store records: in JSON that cost 60 to 80 µs
// of CPU, about a tenth of the whole issuance.
package codec

import (
	"encoding/json"
	"math"
	"reflect"

	"github.com/fxamacker/cbor/v2"
)

var (
	enc = func() cbor.EncMode {
		em, err := cbor.EncOptions{Time: cbor.TimeRFC3339Nano}.EncMode()
		if err != nil {
			panic(err)
		}
		return em
	}()
	// The callers bound the size of what they decode (a queue message, a
	// store record), so the counts are bounded by it, not here: a CRL job
	// may list any number of revoked certificates.
	dec = func() cbor.DecMode {
		dm, err := cbor.DecOptions{
			MaxNestedLevels:  32,
			MaxArrayElements: math.MaxInt32,
			MaxMapPairs:      math.MaxInt32,
			// Like encoding/json: a map inside an `any` decodes to map[string]any.
			DefaultMapType: reflect.TypeOf(map[string]any(nil)),
		}.DecMode()
		if err != nil {
			panic(err)
		}
		return dm
	}()
)

// Marshal encodes v as CBOR.
func Marshal(v any) ([]byte, error) { return enc.Marshal(v) }

// Unmarshal decodes data written by Marshal, or a JSON object.
func Unmarshal(data []byte, v any) error {
	if IsJSON(data) {
		return json.Unmarshal(data, v)
	}
	return dec.Unmarshal(data, v)
}

// IsJSON reports whether data is in the JSON form: an object starts with
// '{', which a CBOR map never does (0x7b starts a CBOR text string).
func IsJSON(data []byte) bool { return len(data) > 0 && data[0] == '{' }

// Wellformed reports whether data is one whole CBOR map (what Marshal
// writes for a struct) or JSON value.
func Wellformed(data []byte) bool {
	if len(data) > 0 && data[0]>>5 == 5 { // major type 5: map
		return dec.Wellformed(data) == nil
	}
	return json.Valid(data)
}
