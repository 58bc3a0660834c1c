package genpolicy

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// The files containerd's CRI reads in a container's root file system to resolve its user.
const (
	passwdPath = "etc/passwd"
	groupPath  = "etc/group"
)

// maxUserFile is the size beyond which /etc/passwd or /etc/group is refused. containerd
// refuses the container past the same size (pkg/oci maxUserFileBytes).
const maxUserFile = 10 << 20

// maxLinkHops bounds the symbolic links followed to reach /etc/passwd or /etc/group (each
// one costs another pass over the layers).
const maxLinkHops = 8

// encryptedSuffix ends the media type of an encrypted layer (ocicrypt):
// application/vnd.oci.image.layer.v1.tar+gzip+encrypted.
const encryptedSuffix = "+encrypted"

// userFiles are an image's /etc/passwd and /etc/group. unknown, when not "", says why they
// could not be read; passwd and group are then nil.
type userFiles struct {
	passwd, group []byte
	unknown       string
}

// readUserFiles reads /etc/passwd and /etc/group from an image's layers (bottom first, as
// v1.Image.Layers lists them) as the flattened root file system has them: the top layer that
// has a file wins, a whiteout (.wh.name) or an opaque directory (.wh..wh..opq) hides what
// lower layers have, and symbolic links are followed within the image. It reads the layers
// from the top and stops as soon as both files are settled. An encrypted layer that would
// have to be read makes them unknown rather than an error.
func readUserFiles(layers []v1.Layer) (*userFiles, error) {
	want := map[string]string{passwdPath: passwdPath, groupPath: groupPath} // file -> path now looked up
	found := map[string][]byte{}
	for hop := 0; len(want) > 0; hop++ {
		if hop > maxLinkHops {
			return nil, fmt.Errorf("more than %d symbolic links to /%s", maxLinkHops, firstKey(want))
		}
		paths := map[string]bool{}
		for _, p := range want {
			paths[p] = true
		}
		settled, unknown, err := findInLayers(layers, paths)
		if err != nil || unknown != "" {
			return &userFiles{unknown: unknown}, err
		}
		for file, p := range want {
			h := settled[p]
			switch h.kind {
			case hitLink:
				want[file] = h.target
				continue
			case hitFile:
				found[file] = h.data
			}
			delete(want, file)
		}
	}
	return &userFiles{passwd: found[passwdPath], group: found[groupPath]}, nil
}

func firstKey(m map[string]string) string {
	for k := range m {
		return k
	}
	return ""
}

// hitKind is what a layer says of a path.
type hitKind int

const (
	hitNone   hitKind = iota // nothing: look in the layer below
	hitHidden                // a whiteout or opaque directory hides the lower layers' file
	hitLink                  // the path, or a directory above it, is a link: look up target
	hitFile                  // the file itself: data
)

type hit struct {
	kind   hitKind
	data   []byte
	target string
}

// findInLayers settles each of paths (relative to the root, cleaned) from the top layer down;
// a path that no layer has is hitNone. unknown is set when an encrypted layer stands in the way.
func findInLayers(layers []v1.Layer, paths map[string]bool) (settled map[string]hit, unknown string, err error) {
	settled = map[string]hit{}
	for i := len(layers) - 1; i >= 0 && len(settled) < len(paths); i-- {
		mt, err := layers[i].MediaType()
		if err != nil {
			return nil, "", fmt.Errorf("layer %d: media type: %w", i, err)
		}
		if strings.HasSuffix(string(mt), encryptedSuffix) {
			return nil, fmt.Sprintf("layer %d is encrypted (%s)", i, mt), nil
		}
		open := map[string]bool{}
		for p := range paths {
			if _, ok := settled[p]; !ok {
				open[p] = true
			}
		}
		hits, err := scanLayer(layers[i], open)
		if err != nil {
			return nil, "", fmt.Errorf("layer %d: %w", i, err)
		}
		for p, h := range hits {
			if h.kind != hitNone {
				settled[p] = h
			}
		}
	}
	return settled, "", nil
}

// scanLayer reads one layer's tar and says what it holds for each of paths. It stops early
// once every path is found as a file or link in this layer.
func scanLayer(l v1.Layer, paths map[string]bool) (map[string]hit, error) {
	rc, err := l.Uncompressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	hits := map[string]hit{}
	tr := tar.NewReader(rc)
	for !settledIn(hits, paths) {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read tar: %w", err)
		}
		name := cleanPath(hdr.Name)
		for p := range paths {
			h, err := entryHit(tr, hdr, name, p)
			if err != nil {
				return nil, err
			}
			if h.kind > hits[p].kind {
				hits[p] = h
			}
		}
	}
	return hits, nil
}

// settledIn says whether every path is a file or a link in this layer: nothing else the
// layer holds can change that (a whiteout only hides the layers below).
func settledIn(hits map[string]hit, paths map[string]bool) bool {
	for p := range paths {
		if hits[p].kind < hitLink {
			return false
		}
	}
	return true
}

// entryHit is what the tar entry hdr (named name) says of path p.
func entryHit(tr *tar.Reader, hdr *tar.Header, name, p string) (hit, error) {
	dir, base := path.Split(name)
	switch {
	case name == p:
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeRegA: //nolint:staticcheck // old archives still use TypeRegA
			data, err := io.ReadAll(io.LimitReader(tr, maxUserFile+1))
			if err != nil {
				return hit{}, fmt.Errorf("read /%s: %w", p, err)
			}
			if len(data) > maxUserFile {
				return hit{}, fmt.Errorf("/%s is larger than %d bytes (containerd refuses it too)", p, maxUserFile)
			}
			return hit{kind: hitFile, data: data}, nil
		case tar.TypeSymlink:
			return hit{kind: hitLink, target: linkTarget(path.Dir(p), hdr.Linkname)}, nil
		case tar.TypeLink: // a hard link names its target by its path in the archive
			return hit{kind: hitLink, target: cleanPath(hdr.Linkname)}, nil
		default:
			return hit{}, fmt.Errorf("/%s is not a regular file", p)
		}
	case strings.HasPrefix(p, name+"/"): // a directory above p
		switch hdr.Typeflag {
		case tar.TypeDir:
			return hit{}, nil
		case tar.TypeSymlink:
			return hit{kind: hitLink, target: path.Join(linkTarget(path.Dir(name), hdr.Linkname), p[len(name)+1:])}, nil
		default:
			return hit{kind: hitHidden}, nil // not a directory: p does not exist
		}
	case base == ".wh..wh..opq":
		if d := strings.TrimSuffix(dir, "/"); strings.HasPrefix(p, d+"/") || d == "" {
			return hit{kind: hitHidden}, nil
		}
	case strings.HasPrefix(base, ".wh."):
		if gone := dir + base[len(".wh."):]; p == gone || strings.HasPrefix(p, gone+"/") {
			return hit{kind: hitHidden}, nil
		}
	}
	return hit{}, nil
}

// cleanPath makes a tar entry name relative to the root: "./etc/passwd" and "/etc/passwd"
// are "etc/passwd"; ".." cannot climb above the root.
func cleanPath(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

// linkTarget resolves a symbolic link found in directory dir within the image's root.
func linkTarget(dir, target string) string {
	if path.IsAbs(target) {
		return cleanPath(target)
	}
	return cleanPath(dir + "/" + target)
}
