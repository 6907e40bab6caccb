package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/qpki/qpki/pkg/cose"
)

// COSERequest asks for a COSE message or CWT signed with the CA's key.
type COSERequest struct {
	Request cose.SignRequest `json:"request"`
	// Key is the idempotency key; Class is interactive (default) or batch.
	Key   string        `json:"key"`
	Class string        `json:"class,omitempty"`
	Wait  time.Duration `json:"wait,omitempty"`
}

// SignCOSE submits a COSE signing job through p — the server's queue, or
// the in-process pipeline when no server holds the CA — and waits up to
// req.Wait for it. The signed message is the status's DER.
func SignCOSE(ctx context.Context, p Pipeline, req COSERequest) (*JobStatus, error) {
	switch p := p.(type) {
	case *Client:
		var st JobStatus
		_, err := p.do(ctx, http.MethodPost, "/v1/cose", req, &st)
		return &st, err
	case *inProcess:
		svc, err := p.service()
		if err != nil {
			return nil, err
		}
		id, err := svc.SubmitCOSE(ctx, req.Key, req.Request, req.Class)
		if err != nil {
			return nil, err
		}
		return p.Job(ctx, id, req.Wait)
	}
	return nil, fmt.Errorf("pipeline %T cannot sign COSE messages", p)
}

// submitCOSE is POST /v1/cose on the local API.
func (s *Server) submitCOSE(w http.ResponseWriter, r *http.Request) {
	var req COSERequest
	if err := json.NewDecoder(io.LimitReader(r.Body, maxLocalBody)).Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("malformed request: %v", err))
		return
	}
	id, err := s.Core.Enroll.SubmitCOSE(r.Context(), req.Key, req.Request, req.Class)
	if err != nil {
		writeErr(w, http.StatusUnprocessableEntity, err)
		return
	}
	s.answerJob(w, r, id, req.Wait)
}
