package main

import (
	"errors"
	"net/http"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/server"
)

// sharedFrontend builds a front-end at Mount time, once serve's queue is
// connected: with --store jetstream its state lives in buckets reached
// through that connection.
type sharedFrontend struct {
	build     func(svc *enroll.Service) (server.Frontend, error)
	endpoints []string
	f         server.Frontend
}

func (s *sharedFrontend) Mount(mux *http.ServeMux, svc *enroll.Service) error {
	f, err := s.build(svc)
	if err != nil {
		return err
	}
	s.f = f
	return f.Mount(mux, svc)
}

func (s *sharedFrontend) Endpoints() []string {
	if e, ok := s.f.(interface{ Endpoints() []string }); ok {
		return e.Endpoints()
	}
	return s.endpoints
}

func (s *sharedFrontend) Close() error {
	if c, ok := s.f.(interface{ Close() error }); ok {
		return c.Close()
	}
	return nil
}

// checkStoreFlag refuses an unknown --store.
func checkStoreFlag(cfg server.Config) error {
	switch cfg.Store {
	case "", server.StoreBolt, server.StoreJetStream:
		return nil
	}
	return errors.New("--store: want " + server.StoreBolt + " or " + server.StoreJetStream)
}
