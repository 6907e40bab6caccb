package est

import (
	"context"
	"testing"
	"time"

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
	ctx := context.Background()
	b, err := newBasicAuth(fe, time.Minute, 100)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.check(ctx, "dev", "pw-1"); err == nil {
		t.Fatal("unknown user accepted")
	}
	created, err := SetUserIn(admin, "dev", []byte("pw-1"))
	if err != nil || !created {
		t.Fatalf("add: %v %v", created, err)
	}
	if err := b.check(ctx, "dev", "pw-1"); err != nil {
		t.Fatal(err)
	}
	if err := b.check(ctx, "dev", "wrong"); err == nil {
		t.Fatal("wrong password accepted")
	}
	created, err = SetUserIn(admin, "dev", []byte("pw-2"))
	if err != nil || created {
		t.Fatalf("change: %v %v", created, err)
	}
	if err := b.check(ctx, "dev", "pw-1"); err == nil {
		t.Fatal("the old password still works")
	}
	if err := b.check(ctx, "dev", "pw-2"); err != nil {
		t.Fatal(err)
	}
	if _, err := SetUserIn(admin, "a:b", []byte("x")); err == nil {
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
	if err := b.check(ctx, "dev", "pw-2"); err == nil {
		t.Fatal("a removed user still authenticates")
	}
}
