package profile

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Units that time.ParseDuration lacks. A year is 365 days and a week 7:
// certificate lifetimes are counted in days, never in calendar months.
var longUnits = map[byte]time.Duration{
	'd': 24 * time.Hour,
	'w': 7 * 24 * time.Hour,
	'y': 365 * 24 * time.Hour,
}

// ParseDuration accepts a Go duration ("8760h", "90m") or a whole number of
// days, weeks or years ("397d", "2w", "10y"). Negative durations are refused.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty duration")
	}
	if unit, ok := longUnits[s[len(s)-1]]; ok && len(s) > 1 {
		digits := s[:len(s)-1]
		n, err := strconv.ParseInt(digits, 10, 64)
		if err != nil || n < 0 || digits[0] == '+' {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		if n > math.MaxInt64/int64(unit) {
			return 0, fmt.Errorf("duration %q is too long", s)
		}
		return time.Duration(n) * unit, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (use e.g. 8760h, 365d, 10y)", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("negative duration %q", s)
	}
	return d, nil
}

// FormatDuration writes d in the largest of y, d, h that divides it exactly.
func FormatDuration(d time.Duration) string {
	for _, u := range []struct {
		suffix string
		unit   time.Duration
	}{{"y", longUnits['y']}, {"d", longUnits['d']}} {
		if d > 0 && d%u.unit == 0 {
			return strconv.FormatInt(int64(d/u.unit), 10) + u.suffix
		}
	}
	return d.String()
}
