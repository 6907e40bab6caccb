package ca

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// MaxCRLShards bounds --shards: each shard is a CRL serve keeps fresh.
const MaxCRLShards = 4096

// CRLConfig partitions a CA's CRLs (ca.meta.json "crl"). Each certificate
// issued while Shards > 0 gets a shard, fixed at issuance from its serial,
// and a crlDistributionPoint naming that shard's CRL:
// <BaseURL>/<Name>/<shard>.crl.
type CRLConfig struct {
	Shards  int    `json:"shards"`
	BaseURL string `json:"base_url"`
	// Name is the CA's name in the URLs (its queue name), fixed when
	// the partitions were configured.
	Name string `json:"name"`
	// Published is the most shards ever configured: shards no longer
	// assigned keep being published for the certificates they hold.
	Published int `json:"published"`
}

// Partitioned reports whether new certificates get a shard.
func (c *CRLConfig) Partitioned() bool { return c != nil && c.Shards > 0 }

// ShardURL is shard k's CRL URL.
func (c *CRLConfig) ShardURL(k int) string {
	return c.BaseURL + "/" + c.Name + "/" + strconv.Itoa(k) + ".crl"
}

// ShardOf is the shard a new certificate with this serial gets.
func (c *CRLConfig) ShardOf(serial *big.Int) int {
	return int(new(big.Int).Mod(serial, big.NewInt(int64(c.Shards))).Int64())
}

// SetCRLConfig partitions the CA's CRLs into shards published under
// baseURL, name being the CA's name in the URL. shards 0 stops assigning
// shards (the published ones stay). Written atomically.
func (c *CA) SetCRLConfig(shards int, baseURL, name string) error {
	if shards < 0 || shards > MaxCRLShards {
		return fmt.Errorf("--shards must be between 0 and %d", MaxCRLShards)
	}
	baseURL = strings.TrimRight(baseURL, "/")
	if shards > 0 {
		u, err := url.Parse(baseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("--base-url %q: want an absolute http(s) URL without query, e.g. http://pki.example.com/crl", baseURL)
		}
	}
	if name == "" || strings.ContainsAny(name, "/?#") {
		return fmt.Errorf("invalid CA name %q for CRL URLs", name)
	}
	m := *c.Meta
	cfg := CRLConfig{Shards: shards, BaseURL: baseURL, Name: name}
	if old := c.Meta.CRL; old != nil {
		cfg.Published = old.Published
		if shards == 0 {
			cfg.BaseURL = old.BaseURL
		}
	}
	cfg.Published = max(cfg.Published, shards)
	m.CRL = &cfg
	if err := writeMeta(c.Dir, &m); err != nil {
		return err
	}
	c.Meta.CRL = &cfg
	return nil
}

// ShardOfCert reads a certificate's shard from its crlDistributionPoints:
// the one URL of the form <base>/<name>/<k>.crl under the CA's base URL.
func (c *CA) ShardOfCert(cert *x509.Certificate) (int, bool) {
	cfg := c.Meta.CRL
	if cfg == nil || cfg.BaseURL == "" || len(cert.CRLDistributionPoints) != 1 {
		return 0, false
	}
	rest, ok := strings.CutPrefix(cert.CRLDistributionPoints[0], cfg.BaseURL+"/"+cfg.Name+"/")
	if !ok {
		return 0, false
	}
	num, ok := strings.CutSuffix(rest, ".crl")
	k, err := strconv.Atoi(num)
	if !ok || err != nil || k < 0 || k >= max(cfg.Published, 1) || strconv.Itoa(k) != num {
		return 0, false
	}
	return k, true
}

var oidIssuingDistributionPoint = []int{2, 5, 29, 28}

// issuingDistributionPoint is the critical extension of a shard's CRL
// (RFC 5280 §5.2.5): its one URL as fullName, and onlyContainsUserCerts,
// since enroll issues no CA certificates.
func issuingDistributionPoint(uri string) (pkix.Extension, error) {
	if uri == "" {
		return pkix.Extension{}, errors.New("empty issuingDistributionPoint")
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) { // distributionPoint
			b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) { // fullName
				b.AddASN1(cbasn1.Tag(6).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(uri)) })
			})
		})
		b.AddASN1(cbasn1.Tag(1).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddUint8(0xff) }) // onlyContainsUserCerts
	})
	v, err := b.Bytes()
	if err != nil {
		return pkix.Extension{}, err
	}
	return pkix.Extension{Id: oidIssuingDistributionPoint, Critical: true, Value: v}, nil
}

// IssuingDistributionPointURL is the one fullName URI of a CRL's
// issuingDistributionPoint as qpki writes it, "" when the CRL has none;
// "invalid" for one qpki would not write (not critical, other fields).
func IssuingDistributionPointURL(crl *x509.RevocationList) string {
	for _, e := range crl.Extensions {
		if !e.Id.Equal(oidIssuingDistributionPoint) {
			continue
		}
		uri, ok := parseIDP(e.Value)
		if !ok || !e.Critical {
			return "invalid"
		}
		want, err := issuingDistributionPoint(uri)
		if err != nil || !bytes.Equal(want.Value, e.Value) {
			return "invalid"
		}
		return uri
	}
	return ""
}

func parseIDP(v []byte) (string, bool) {
	s := cryptobyte.String(v)
	var seq, dp, full, uri cryptobyte.String
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !s.Empty() ||
		!seq.ReadASN1(&dp, cbasn1.Tag(0).Constructed().ContextSpecific()) ||
		!dp.ReadASN1(&full, cbasn1.Tag(0).Constructed().ContextSpecific()) ||
		!full.ReadASN1(&uri, cbasn1.Tag(6).ContextSpecific()) || !full.Empty() || !dp.Empty() {
		return "", false
	}
	return string(uri), true
}
