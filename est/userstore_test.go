package est

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/qpki/qpki/enroll"
	"github.com/qpki/qpki/internal/natstest"
	"github.com/qpki/qpki/pkg/store/jskv"
)

// sharedUsersAt opens CA ca's users bucket on a connection of its own,
// as another front-end process would.
func sharedUsersAt(t *testing.T, url, ca string) UserStore {
	t.Helper()
	js := natstest.Connect(t, url)
	r, err := jskv.OpenRecords(context.Background(), js, jskv.Options{CA: ca}, jskv.BucketESTUsers)
	if err != nil {
		t.Fatal(err)
	}
	return SharedUsers(r)
}

// A user added through one front-end's store authenticates at another;
// a password change and a removal count there at once.
func TestSharedUsers(t *testing.T) {
	url := natstest.StartCluster(t, 1).URL()
	admin := sharedUsersAt(t, url, "issuing")
	fe := sharedUsersAt(t, url, "issuing")
	b, err := newBasicAuth(fe, time.Minute, 100, 4)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.check("dev", "pw-1"); err == nil {
		t.Fatal("unknown user accepted")
	}
	created, err := SetUserIn(admin, "dev", []byte("pw-1"), nil)
	if err != nil || !created {
		t.Fatalf("add: %v %v", created, err)
	}
	if _, err := b.check("dev", "pw-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.check("dev", "wrong"); err == nil {
		t.Fatal("wrong password accepted")
	}
	created, err = SetUserIn(admin, "dev", []byte("pw-2"), &enroll.NamePolicy{DNS: []string{"dev.example.com"}})
	if err != nil || created {
		t.Fatalf("change: %v %v", created, err)
	}
	if _, err := b.check("dev", "pw-1"); err == nil {
		t.Fatal("the old password still works")
	}
	// The grants travel with the user, to every front-end.
	if u, err := b.check("dev", "pw-2"); err != nil || u.Names == nil || !slices.Equal(u.Names.DNS, []string{"dev.example.com"}) {
		t.Fatalf("user %+v: %v", u, err)
	}
	if _, err := SetUserIn(admin, "a:b", []byte("x"), nil); err == nil {
		t.Fatal("a name with ':' accepted")
	}
	users, err := fe.List()
	if err != nil || len(users) != 1 || users[0].Name != "dev" || users[0].Created.IsZero() {
		t.Fatalf("list: %+v %v", users, err)
	}
	if err := admin.Remove("dev"); err != nil {
		t.Fatal(err)
	}
	if err := admin.Remove("dev"); err == nil {
		t.Fatal("removing a missing user succeeded")
	}
	if _, err := b.check("dev", "pw-2"); err == nil {
		t.Fatal("a removed user still authenticates")
	}
}
