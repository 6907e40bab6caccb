package scep

import "github.com/qpki/qpki/enroll"

func namesDNS(dns ...string) *enroll.NamePolicy { return &enroll.NamePolicy{DNS: dns} }
