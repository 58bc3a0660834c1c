package ociimage

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ContainerdNameAnnotation is containerd's annotation for an image's name in an index. `ctr
// images import` names an imported image by it first, then by the OCI ref.name annotation,
// which it keeps only when it is a full reference (see docs/images.md).
const ContainerdNameAnnotation = "io.containerd.image.name"

// Annotations returns the annotations of the image's descriptor in the layout's index.json:
// the normalized name as org.opencontainers.image.ref.name and io.containerd.image.name.
func (img *Image) Annotations() map[string]string {
	return map[string]string{ocispec.AnnotationRefName: img.Name, ContainerdNameAnnotation: img.Name}
}

// descriptor is the image's entry in index.json: the manifest with its platform and
// Annotations (and no artifactType, which go-containerregistry would add).
func (img *Image) descriptor() (v1.Descriptor, error) {
	mt, err := img.Image.MediaType()
	if err != nil {
		return v1.Descriptor{}, err
	}
	size, err := img.Image.Size()
	if err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{MediaType: mt, Size: size, Digest: img.Digest, Annotations: img.Annotations(),
		Platform: &v1.Platform{OS: OS, Architecture: Architecture}}, nil
}

// WriteLayout writes the image as an OCI image layout in dir (oci-layout, index.json with the
// one image and its annotations, blobs/sha256/...). dir is replaced when it is an OCI layout
// or empty, and refused when it holds anything else. The layout is made beside dir and
// renamed into place, so dir is never half written.
func (img *Image) WriteLayout(dir string) error {
	if err := replaceable(dir); err != nil {
		return err
	}
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("layout: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+"-")
	if err != nil {
		return fmt.Errorf("layout: %w", err)
	}
	defer os.RemoveAll(tmp)
	p, err := layout.Write(tmp, empty.Index)
	if err != nil {
		return fmt.Errorf("layout %s: %w", dir, err)
	}
	if err := p.WriteImage(img.Image); err != nil {
		return fmt.Errorf("layout %s: %w", dir, err)
	}
	desc, err := img.descriptor()
	if err == nil {
		err = p.AppendDescriptor(desc)
	}
	if err != nil {
		return fmt.Errorf("layout %s: %w", dir, err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("layout: %w", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("layout: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("layout: %w", err)
	}
	return nil
}

// replaceable refuses a dir that exists and is neither empty nor an OCI layout.
func replaceable(dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && len(ents) == 0) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("layout: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "oci-layout")); err != nil {
		return fmt.Errorf("layout: %s exists and is not an OCI layout: not replacing it", dir)
	}
	return nil
}

// WriteArchive writes the OCI layout in dir as an OCI archive (a tar of the layout, what `ctr
// images import` and `skopeo copy oci-archive:` read) to file. The entries are sorted, owned
// by 0:0, mode 0644 (directories 0755) and stamped with mtime, so the archive is as
// reproducible as the layout. It is written beside file and renamed into place.
func WriteArchive(dir, file string, mtime time.Time) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+"-")
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	defer os.Remove(f.Name())
	err = archiveLayout(dir, f, mtime.UTC().Truncate(time.Second))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), file)
	}
	if err != nil {
		return fmt.Errorf("archive %s: %w", file, err)
	}
	return nil
}

// Write writes the image's layout to dir and, when archive is not empty, its OCI archive.
func (img *Image) Write(dir, archive string) error {
	if err := img.WriteLayout(dir); err != nil {
		return err
	}
	if archive == "" {
		return nil
	}
	return WriteArchive(dir, archive, img.Created)
}

// archiveLayout writes the tar of the layout in dir to w.
func archiveLayout(dir string, w io.Writer, mtime time.Time) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		hdr := &tar.Header{Name: rel, Mode: 0o644, ModTime: mtime, Typeflag: tar.TypeReg}
		switch {
		case d.IsDir():
			hdr.Name, hdr.Mode, hdr.Typeflag = rel+"/", 0o755, tar.TypeDir
			return tw.WriteHeader(hdr)
		case !d.Type().IsRegular():
			return fmt.Errorf("%s: not a regular file", p)
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return err
		}
		hdr.Size = st.Size()
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		n, err := io.Copy(tw, f)
		if err == nil && n != hdr.Size {
			err = fmt.Errorf("%s changed while it was read", p)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("archive %s: %w", dir, err)
	}
	return tw.Close()
}
