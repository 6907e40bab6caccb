package worker_test

import "github.com/qpki/qpki/enroll"

// testPrincipal is the operator, who may have any name the profile allows.
var testPrincipal = enroll.Operator(enroll.FrontendCLI, "test")
