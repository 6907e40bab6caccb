package queue

import (
	"fmt"
	"strings"
)

// Stream names.
const (
	StreamJobs    = "QPKI_JOBS"
	StreamResults = "QPKI_RESULTS"
	StreamDead    = "QPKI_DEAD"
)

// Subject prefixes. Every subject is built from tokens checked by
// ValidToken, so no caller-supplied string can add a token or a wildcard.
const (
	jobsPrefix    = "qpki.jobs"
	resultsPrefix = "qpki.results"
	deadPrefix    = "qpki.dead"
)

// Job kinds.
const (
	KindIssue = "issue" // issue a certificate
	KindCRL   = "crl"   // sign a CRL
	KindCOSE  = "cose"  // sign a COSE message or CWT
	KindOCSP  = "ocsp"  // sign OCSP responses
)

// Job classes. Interactive jobs (ACME, EST, CLI) are handed to workers
// before any batch job.
const (
	ClassInteractive = "interactive"
	ClassBatch       = "batch"
)

// Token length limits.
const (
	MaxCANameLen = 64
	MaxJobIDLen  = 128
)

// ValidToken reports whether s can be used as one subject token (and as
// part of a consumer name): 1 to max characters from [A-Za-z0-9_-].
// This excludes the NATS separators and wildcards ('.', '*', '>') and
// whitespace, and is the alphabet of base64url, hex and UUIDs.
func ValidToken(s string, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// CheckCA returns an error when ca is not a valid CA name for subjects.
func CheckCA(ca string) error {
	if !ValidToken(ca, MaxCANameLen) {
		return fmt.Errorf("queue: invalid CA name %q: want 1 to %d characters from [A-Za-z0-9_-]", ca, MaxCANameLen)
	}
	return nil
}

// CheckJobID returns an error when id is not a valid job id.
func CheckJobID(id string) error {
	if !ValidToken(id, MaxJobIDLen) {
		return fmt.Errorf("queue: invalid job id %q: want 1 to %d characters from [A-Za-z0-9_-]", id, MaxJobIDLen)
	}
	return nil
}

// ValidKind reports whether kind is a known job kind.
func ValidKind(kind string) bool {
	return kind == KindIssue || kind == KindCRL || kind == KindCOSE || kind == KindOCSP
}

// ValidClass reports whether class is a known job class.
func ValidClass(class string) bool {
	return class == ClassInteractive || class == ClassBatch
}

// JobSubject is the subject a job is published on:
// qpki.jobs.<ca>.<kind>.<class>. The arguments must be valid.
func JobSubject(ca, kind, class string) string {
	return jobsPrefix + "." + ca + "." + kind + "." + class
}

// jobFilter is the filter of the consumer that takes one class of jobs
// of one CA, all kinds.
func jobFilter(ca, class string) string {
	return jobsPrefix + "." + ca + ".*." + class
}

// parseJobSubject splits qpki.jobs.<ca>.<kind>.<class>.
func parseJobSubject(subject string) (ca, kind, class string, ok bool) {
	rest, found := strings.CutPrefix(subject, jobsPrefix+".")
	if !found {
		return "", "", "", false
	}
	t := strings.Split(rest, ".")
	if len(t) != 3 {
		return "", "", "", false
	}
	return t[0], t[1], t[2], true
}

// ResultSubject is the subject of the result of one job:
// qpki.results.<ca>.<job id>. With one message per subject, looking up a
// job's result is one get of the last message on this subject.
func ResultSubject(ca, jobID string) string {
	return resultsPrefix + "." + ca + "." + jobID
}

// resultFilter matches the results of one CA, or of all CAs when ca is "".
func resultFilter(ca string) string {
	if ca == "" {
		return resultsPrefix + ".>"
	}
	return resultsPrefix + "." + ca + ".*"
}

// DeadSubject is the subject of the dead letter of one job:
// qpki.dead.<ca>.<job id>.
func DeadSubject(ca, jobID string) string {
	return deadPrefix + "." + ca + "." + jobID
}

func deadFilter(ca string) string {
	if ca == "" {
		return deadPrefix + ".>"
	}
	return deadPrefix + "." + ca + ".*"
}

// Durable consumer names. The class (or "results") is a fixed suffix, so
// distinct (ca, class) pairs give distinct names.
func jobConsumerName(ca, class string) string { return "qpki-jobs-" + ca + "-" + class }

func resultConsumerName(ca string) string {
	if ca == "" {
		return "qpki-results"
	}
	return "qpki-results-" + ca
}
