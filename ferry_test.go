package ferry_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/ferrydrive/ferry"
)

func TestValidateName(t *testing.T) {
	for _, tt := range []struct {
		name   string
		folder bool
		ok     bool
	}{
		{"report.pdf", false, true},
		{"Ünïcødé 文件.txt", false, true},
		{"50% #1.txt", false, true},
		{"a.", false, true},
		{"a.", true, false},
		{"", false, false},
		{".", false, false},
		{"..", false, false},
		{"a/b", false, false},
		{`a\b`, false, false},
		{"a:b", false, false},
		{"a*b", false, false},
		{"a?b", false, false},
		{"a<b", false, false},
		{"a>b", false, false},
		{"a|b", false, false},
		{`a"b`, false, false},
		{"a\x00b", false, false},
		{"a\nb", false, false},
		{" lead", false, false},
		{"trail ", false, false},
		{strings.Repeat("x", 255), false, true},
		{strings.Repeat("x", 256), false, false},
		{"\xff\xfe", false, false},
		{"\ufffd", false, false},
		{"a\ufffdb.txt", false, false},
	} {
		t.Run(fmt.Sprintf("%q/folder=%v", tt.name, tt.folder), func(t *testing.T) {
			err := ferry.ValidateName(tt.name, tt.folder)
			if (err == nil) != tt.ok {
				t.Fatalf("ValidateName(%q, %v) = %v, want ok=%v", tt.name, tt.folder, err, tt.ok)
			}
			if err != nil && ferry.KindOf(err) != ferry.Invalid {
				t.Fatalf("kind = %v, want Invalid", ferry.KindOf(err))
			}
		})
	}
}

func TestRenameCandidate(t *testing.T) {
	for _, tt := range []struct {
		name   string
		folder bool
		n      int
		want   string
	}{
		{"report.pdf", false, 1, "report 1.pdf"},
		{"archive.tar.gz", false, 2, "archive.tar 2.gz"},
		{"README", false, 1, "README 1"},
		{".bashrc", false, 1, ".bashrc 1"},
		{"Photos", true, 1, "Photos 1"},
		{"v1.2", true, 3, "v1.2 3"},
	} {
		if got := ferry.RenameCandidate(tt.name, tt.folder, tt.n); got != tt.want {
			t.Errorf("RenameCandidate(%q, %v, %d) = %q, want %q", tt.name, tt.folder, tt.n, got, tt.want)
		}
	}
}

func TestItemMatches(t *testing.T) {
	it := &ferry.Item{ID: "ABC", Version: 3, ContentVersion: 2}
	if got, want := it.ETag(), `"{ABC},3"`; got != want {
		t.Fatalf("ETag() = %s, want %s", got, want)
	}
	for _, tt := range []struct {
		ifMatch string
		want    bool
	}{
		{"", true}, {"*", true}, {`"{ABC},3"`, true}, {`W/"{ABC},3"`, true}, {`{ABC},3`, true},
		{`"c:{ABC},2"`, true}, {`"x", "{ABC},3"`, true},
		{`"{ABC},2"`, false}, {`"c:{ABC},3"`, false}, {`"{ABD},3"`, false},
	} {
		if got := it.Matches(tt.ifMatch); got != tt.want {
			t.Errorf("Matches(%q) = %v, want %v", tt.ifMatch, got, tt.want)
		}
	}
}

func TestErrorMessageHidesInternals(t *testing.T) {
	internal := fmt.Errorf("sqlstore: insert: %w", errors.New("pq: duplicate key value violates constraint items_pkey"))
	if got := ferry.Message(internal); strings.Contains(got, "pq") || strings.Contains(got, "sqlstore") {
		t.Fatalf("Message(internal) = %q leaks the cause", got)
	}
	e := fmt.Errorf("graph: %w", ferry.Errorf(ferry.NameConflict, "an item named %q already exists", "a").WithCode("x"))
	if ferry.KindOf(e) != ferry.NameConflict || ferry.CodeOf(e) != "x" || ferry.Message(e) != `an item named "a" already exists` {
		t.Fatalf("wrapped error: kind %v code %q message %q", ferry.KindOf(e), ferry.CodeOf(e), ferry.Message(e))
	}
}

func TestParseScopes(t *testing.T) {
	s, err := ferry.ParseScopes("Files.Read, Files.ReadWrite.All,Files.Read")
	if err != nil || s.String() != "Files.Read,Files.ReadWrite.All" {
		t.Fatalf("ParseScopes = %v, %v", s, err)
	}
	if !s.CanWrite() || !s.CanRead() {
		t.Fatal("Files.ReadWrite.All must allow reads and writes")
	}
	if (ferry.Scopes{ferry.ScopeRead}).CanWrite() {
		t.Fatal("Files.Read must not allow writes")
	}
	for _, bad := range []string{"", "Files.Write", "files.read"} {
		if _, err := ferry.ParseScopes(bad); ferry.KindOf(err) != ferry.Invalid {
			t.Errorf("ParseScopes(%q) error = %v, want Invalid", bad, err)
		}
	}
}

func TestValidateSourceURL(t *testing.T) {
	for _, tt := range []struct {
		url string
		ok  bool
	}{
		{"http://example.org/a.iso", true},
		{"HTTPS://example.org/a?sig=1", true},
		{"ftp://example.org/a", false},
		{"file:///etc/passwd", false},
		{"javascript:alert(1)", false},
		{"http://user:pw@example.org/", false},
		{"http:///nohost", false},
		{"", false},
		{"://", false},
		{"example.org/a", false},
	} {
		_, err := ferry.ValidateSourceURL(tt.url)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateSourceURL(%q) = %v, want ok=%v", tt.url, err, tt.ok)
		}
	}
}

func TestPercentage(t *testing.T) {
	for _, tt := range []struct {
		j    ferry.Job
		want float64
	}{
		{ferry.Job{Status: ferry.StatusInProgress, Bytes: 50, Total: 200}, 25},
		{ferry.Job{Status: ferry.StatusInProgress, Bytes: 200, Total: 200}, 99.9},
		{ferry.Job{Status: ferry.StatusInProgress, Bytes: 200, Total: -1}, 0},
		{ferry.Job{Status: ferry.StatusCompleted, Bytes: 0, Total: -1}, 100},
	} {
		if got := tt.j.Percentage(); got != tt.want {
			t.Errorf("%+v.Percentage() = %v, want %v", tt.j, got, tt.want)
		}
	}
}
