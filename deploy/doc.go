// Package deploy holds no code: its folders are deployment files (a NATS
// cluster config, systemd units, a compose file, Kubernetes manifests) and
// its test checks that they parse and that what they ask of qpki exists.
package deploy
