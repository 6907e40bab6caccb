package store

import (
	"fmt"

	"github.com/qpki/qpki/internal/codec"
)

// Certificate and job records are kept in bbolt as CBOR maps under the
// same names as their JSON fields (package codec). JSON cost 30 µs to
// write and read back a job record (its payload and a certificate's DER go
// through base64), about a tenth of the pipeline's CPU per certificate;
// CBOR costs 6. Records written as JSON by earlier versions are still read.

// encodeRecord encodes a record for the store.
func encodeRecord(v any) ([]byte, error) {
	b, err := codec.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("store: encoding %T: %w", v, err)
	}
	return b, nil
}

// decodeRecord decodes a record written by encodeRecord, or a JSON one.
func decodeRecord(data []byte, v any) error {
	if err := codec.Unmarshal(data, v); err != nil {
		return fmt.Errorf("store: decoding %T: %w", v, err)
	}
	return nil
}
