package upload_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/upload"
)

func TestCheck(t *testing.T) {
	t.Parallel()
	csv := []byte("symbol,date,open,high,low,close,volume\nAAPL,2024-01-02,1,2,0.5,1.5,100\n")
	pdf := []byte("%PDF-1.7\n1 0 obj\n")
	zip := []byte("PK\x03\x04\x14\x00\x00\x00")
	cases := []struct {
		name, declared, file string
		head                 []byte
		want                 string // "" means a *TypeError
	}{
		{"csv declared", "text/csv", "p.csv", csv, "text/csv"},
		{"csv with charset", "text/csv; charset=utf-8", "p.csv", csv, "text/csv; charset=utf-8"},
		{"csv alias", "application/csv", "p.csv", csv, "text/csv"},
		{"csv undeclared by name", "", "p.csv", csv, "text/csv; charset=utf-8"},
		{"csv octet-stream by name", "application/octet-stream", "p.CSV", csv, "text/csv; charset=utf-8"},
		{"text undeclared", "", "notes", csv, "text/plain; charset=utf-8"},
		{"json declared", "application/json", "x.json", []byte(` {"a":1}`), "application/json"},
		{"json by name", "", "x.json", []byte(`[1,2]`), "application/json"},
		{"json that is csv", "application/json", "x.json", csv, ""},
		{"csv that is a pdf", "text/csv", "p.csv", pdf, ""},
		{"csv that is a zip", "text/csv", "p.csv", zip, ""},
		{"csv with NUL", "text/csv", "p.csv", []byte("a,b\n\x00\x01,c\n"), ""},
		{"pdf declared", "application/pdf", "r.pdf", pdf, "application/pdf"},
		{"pdf that is text", "application/pdf", "r.pdf", csv, ""},
		{"zip declared", "application/zip", "a.zip", zip, "application/zip"},
		{"pdf undeclared", "", "r.bin", pdf, "application/pdf"},
		{"not a media type", "text/", "p.csv", csv, ""},
		{"empty csv", "text/csv", "p.csv", nil, "text/csv"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := upload.Check(tc.declared, tc.file, tc.head)
			if tc.want == "" {
				var te *upload.TypeError
				require.True(t, errors.As(err, &te), "want a TypeError, got %q, %v", got, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}
