package startup

import (
	"bytes"
	"strconv"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// The line goes through logrus's text formatter, as on the guest console, and comes back.
func TestLineParse(t *testing.T) {
	t.Setenv(ExecEnv, strconv.FormatInt(int64(time.Second), 10))
	tr := FromEnv()
	tr.MarkAt("main", 1300*time.Millisecond)
	tr.MarkAt("policy", 1402500*time.Microsecond)
	var buf bytes.Buffer
	l := logrus.New()
	l.SetOutput(&buf)
	l.SetFormatter(&logrus.TextFormatter{DisableColors: true, FullTimestamp: true})
	l.WithField("component", "agent").Info(tr.Line())
	got, err := Parse("boot noise\n" + buf.String() + "more noise\n")
	if err != nil {
		t.Fatalf("Parse(%q): %v", buf.String(), err)
	}
	if len(got) != 2 || got["main"] != 300 || got["policy"] != 402.5 {
		t.Errorf("Parse(%q) = %v, want main=300 policy=402.5", buf.String(), got)
	}
}

func TestNoExecTime(t *testing.T) {
	t.Setenv(ExecEnv, "junk")
	tr := FromEnv()
	tr.MarkAt("main", 5*time.Second)
	tr.MarkAt("serving", 5*time.Second+20*time.Millisecond)
	if s := tr.String(); s != "main=0.0 serving=20.0" {
		t.Errorf("String() = %q, want counted from the first step", s)
	}
	if _, err := Parse("no line here"); err == nil {
		t.Error("Parse of a console without the line: no error")
	}
}
