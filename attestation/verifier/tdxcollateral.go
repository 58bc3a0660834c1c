package verifier

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
)

// tdxDirGetter serves Intel PCS collateral from the collateral directory, as PCS sent it: the
// body in the file named by the URL's path and query (".../tdx/certification/v4/tcb?fmspc=..."
// is DIR/tdx/certification/v4/tcb?fmspc=...), its response headers (the issuer chains) in the
// same name plus ".headers", in curl -D form. A file missing from the directory comes from next
// when it is set (FetchCollateral), else is an error naming the file.
type tdxDirGetter struct {
	ctx  context.Context
	dir  string
	next HTTPSGetter
}

func (g tdxDirGetter) Get(link string) (map[string][]string, []byte, string, error) {
	rel, err := collateralPath(link)
	if err != nil {
		return nil, nil, link, err
	}
	file := filepath.Join(g.dir, rel)
	body, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) && g.next != nil {
		h, body, err := g.next.Get(g.ctx, link)
		return h, body, link, err
	}
	if err != nil {
		return nil, nil, file, fmt.Errorf("collateral for %s: %w", link, err)
	}
	header, err := readHeaderDump(file + ".headers")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, file, err
	}
	return header, body, file, nil
}

// readHeaderDump reads HTTP response headers as curl -D writes them: a status line, then
// "Name: value" lines. Only the last response of the file counts (curl writes one per redirect).
func readHeaderDump(file string) (map[string][]string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	data = bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n"))
	blocks := strings.Split(strings.TrimSpace(string(data)), "\n\n")
	last := blocks[len(blocks)-1]
	r := textproto.NewReader(bufio.NewReader(strings.NewReader(last + "\n\n")))
	status, err := r.ReadLine()
	if err != nil || !strings.HasPrefix(status, "HTTP/") {
		return nil, fmt.Errorf("collateral headers %s: first line %q is not an HTTP status line", file, status)
	}
	h, err := r.ReadMIMEHeader()
	if err != nil {
		return nil, fmt.Errorf("collateral headers %s: %w", file, err)
	}
	return h, nil
}
