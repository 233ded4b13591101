package exec

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestSSHErrorsMaskSecretsInStderr(t *testing.T) {
	_, cfg := sshFixture(t)
	s := NewSSH(cfg)
	defer s.Close()
	// tgtadm and iscsiadm repeat their argv when they fail.
	cmd := Cmd{Args: []string{"sh", "-c", `echo "tgtadm: bad --password $1" >&2; exit 22`, "sh", "hunter2"}, Secrets: []string{"hunter2"}}
	for _, r := range []Runner{&Local{Name: "stor1"}, s} {
		_, err := r.Run(context.Background(), cmd)
		if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "bad --password ***") {
			t.Errorf("%T: err = %v", r, err)
		}
		var e *Error
		if errors.As(err, &e) && strings.Contains(e.Stderr, "hunter2") {
			t.Errorf("%T: Error.Stderr holds the secret: %q", r, e.Stderr)
		}
	}
}

func TestSSHStdinReachesTheCommandExactly(t *testing.T) {
	_, cfg := sshFixture(t)
	s := NewSSH(cfg)
	defer s.Close()
	for _, in := range []string{"1", "two\nlines\n\n", "", "$(touch PWNED) 'x' \\"} {
		res, err := s.Run(context.Background(), Cmd{Args: []string{"od", "-An", "-c"}, Stdin: strings.NewReader(in)})
		if err != nil {
			t.Fatal(err)
		}
		want, _ := (&Local{}).Run(context.Background(), Cmd{Args: []string{"od", "-An", "-c"}, Stdin: strings.NewReader(in)})
		if string(res.Stdout) != string(want.Stdout) {
			t.Errorf("stdin %q arrived as %q, want %q", in, res.Stdout, want.Stdout)
		}
	}
}
