package initdata_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/veil-runtime/veil/initdata"
)

func TestDiskRoundTrip(t *testing.T) {
	for _, doc := range [][]byte{[]byte(doc256), {'x'}, bytes.Repeat([]byte{'a'}, initdata.DiskSectorSize-initdata.DiskHeaderSize),
		bytes.Repeat([]byte{'b'}, initdata.MaxDocumentSize)} {
		img, err := initdata.EncodeDisk(doc)
		if err != nil {
			t.Fatalf("initdata.EncodeDisk(%d bytes): %v", len(doc), err)
		}
		if len(img)%initdata.DiskSectorSize != 0 || len(img) < initdata.DiskHeaderSize+len(doc) || len(img) > initdata.MaxDiskSize {
			t.Fatalf("image of a %d-byte document is %d bytes", len(doc), len(img))
		}
		if string(img[:8]) != initdata.DiskMagic || binary.LittleEndian.Uint64(img[8:16]) != uint64(len(doc)) {
			t.Fatalf("header %q", img[:16])
		}
		if strings.Trim(string(img[initdata.DiskHeaderSize+len(doc):]), "\x00") != "" {
			t.Fatal("padding is not zeros")
		}
		got, err := initdata.DecodeDisk(img)
		if err != nil || !bytes.Equal(got, doc) {
			t.Fatalf("initdata.DecodeDisk: %d bytes, %v; want the %d bytes encoded", len(got), err, len(doc))
		}
	}
	// The reader stops after the document: a device larger than the image reads the same.
	img, _ := initdata.EncodeDisk([]byte(doc256))
	got, err := initdata.ReadDisk(io.MultiReader(bytes.NewReader(img), bytes.NewReader(make([]byte, 4096))))
	if err != nil || string(got) != doc256 {
		t.Fatalf("initdata.ReadDisk of a larger device: %q, %v", got, err)
	}
}

func TestDiskErrors(t *testing.T) {
	if _, err := initdata.EncodeDisk(nil); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("initdata.EncodeDisk(nil) = %v, want empty document", err)
	}
	if _, err := initdata.EncodeDisk(make([]byte, initdata.MaxDocumentSize+1)); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("initdata.EncodeDisk(oversize) = %v", err)
	}
	good, _ := initdata.EncodeDisk([]byte(doc256))
	header := func(magic string, n uint64) []byte {
		b := append([]byte(magic), make([]byte, 8)...)
		binary.LittleEndian.PutUint64(b[8:], n)
		return b
	}
	for name, tc := range map[string]struct {
		img  []byte
		want string
	}{
		"empty device":      {nil, "disk truncated"},
		"short header":      {[]byte("VEILIN"), "disk truncated"},
		"bad magic":         {append(header("NOTINIT!", 5), "hello"...), "no VEILINIT magic"},
		"zeros":             {make([]byte, 512), "no VEILINIT magic"},
		"zero length":       {header(initdata.DiskMagic, 0), "empty document"},
		"oversize length":   {header(initdata.DiskMagic, initdata.MaxDocumentSize+1), "more than"},
		"huge length":       {header(initdata.DiskMagic, 1<<63), "more than"},
		"truncated":         {good[:initdata.DiskHeaderSize+10], "disk truncated"},
		"truncated at body": {good[:initdata.DiskHeaderSize], "disk truncated"},
	} {
		_, err := initdata.DecodeDisk(tc.img)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: initdata.DecodeDisk = %v, want an error saying %q", name, err, tc.want)
		}
		if strings.Contains(tc.want, "magic") && !errors.Is(err, initdata.ErrNoDiskMagic) {
			t.Errorf("%s: %v is not initdata.ErrNoDiskMagic", name, err)
		}
		if strings.Contains(tc.want, "truncated") && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%s: %v is not io.ErrUnexpectedEOF", name, err)
		}
	}
}
