package store

import "sort"

func sortByIssued(cs []*Cert) {
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].Issued.Before(cs[j].Issued) })
}
