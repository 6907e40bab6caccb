package wfe

import (
	"testing"
	"time"
)

// TestGate: close waits for the requests admitted, and admits no more.
func TestGate(t *testing.T) {
	g := newGate()
	if !g.enter() {
		t.Fatal("an open gate refused a request")
	}
	if g.close(10 * time.Millisecond) {
		t.Fatal("close did not wait for the request being served")
	}
	if g.enter() {
		t.Fatal("a closed gate admitted a request")
	}
	done := make(chan bool)
	go func() { done <- g.close(time.Minute) }()
	g.leave()
	if !<-done {
		t.Fatal("close timed out after the last request left")
	}
}
