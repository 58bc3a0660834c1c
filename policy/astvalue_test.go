package policy

import (
	"encoding/json"
	"os"
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// populate sets every field of m (lists get two elements) down to depth levels.
func populate(m protoreflect.Message, depth int) {
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		switch {
		case fd.IsMap():
			continue // agent.proto has no maps
		case fd.IsList():
			l := m.Mutable(fd).List()
			for j := 0; j < 2; j++ {
				if fd.Message() != nil {
					e := l.NewElement()
					if depth > 0 {
						populate(e.Message(), depth-1)
					}
					l.Append(e)
				} else {
					l.Append(sampleScalar(fd, j))
				}
			}
		case fd.Message() != nil:
			if depth > 0 {
				populate(m.Mutable(fd).Message(), depth-1)
			}
		default:
			m.Set(fd, sampleScalar(fd, 1))
		}
	}
}

func sampleScalar(fd protoreflect.FieldDescriptor, j int) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(j == 1)
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(-7 * j))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(uint32(4000000000 - j))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(-1<<50 + int64(j))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(1<<63 + uint64(j))
	case protoreflect.StringKind:
		return protoreflect.ValueOfString("s\"\n\u00e9" + string(rune('a'+j)))
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte{0, 1, byte(j), 0xff})
	case protoreflect.EnumKind:
		return protoreflect.ValueOfEnum(fd.Enum().Values().Get(j % fd.Enum().Values().Len()).Number())
	}
	panic("kind " + fd.Kind().String())
}

// TestProtoValueMatchesProtoJSON checks the direct conversion of every request (and reply)
// type against protojson followed by a JSON decode.
func TestProtoValueMatchesProtoJSON(t *testing.T) {
	for _, e := range methodTable() {
		for _, full := range []bool{false, true} {
			m := e.input.New()
			if full {
				populate(m, 3)
			}
			got, err := protoValue(m)
			if err != nil {
				t.Fatalf("%s: %v", e.Rule, err)
			}
			want, err := viaProtoJSON(m)
			if err != nil {
				t.Fatalf("%s: %v", e.Rule, err)
			}
			if got.Compare(want) != 0 {
				t.Errorf("%s (populated %v):\n got %v\nwant %v", e.Rule, full, got, want)
			}
		}
	}
}

func TestGoValueMatchesJSON(t *testing.T) {
	u64, i64, mode := uint64(1<<62), int64(-5), os.FileMode(0o644)
	full := specs.Spec{
		Version: "1.2.0",
		Process: &specs.Process{
			Terminal: true, User: specs.User{UID: 1, GID: 2, AdditionalGids: []uint32{3}},
			Args: []string{"a", "b"}, Env: []string{"X=1"}, Cwd: "/",
			Capabilities: &specs.LinuxCapabilities{Bounding: []string{"CAP_KILL"}},
			Rlimits:      []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1 << 40, Soft: 10}},
		},
		Root:        &specs.Root{Path: "/r", Readonly: true},
		Mounts:      []specs.Mount{{Destination: "/d", Type: "bind", Source: "/s", Options: []string{"ro"}}, {Destination: "/e"}},
		Hooks:       &specs.Hooks{Prestart: []specs.Hook{{Path: "/h", Timeout: new(int)}}},
		Annotations: map[string]string{"a": "b", "c": ""},
		Linux: &specs.Linux{
			UIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 1}},
			Sysctl:      map[string]string{"net.x": "1"},
			Resources: &specs.LinuxResources{
				Memory:  &specs.LinuxMemory{Limit: &i64, Swappiness: &u64},
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
			},
			Namespaces: []specs.LinuxNamespace{{Type: "pid"}, {Type: "network", Path: "/proc/1/ns/net"}},
			Devices:    []specs.LinuxDevice{{Path: "/dev/x", Type: "c", Major: 1, Minor: 3, FileMode: &mode}},
			Seccomp:    &specs.LinuxSeccomp{DefaultAction: "SCMP_ACT_ERRNO", Syscalls: []specs.LinuxSyscall{{Names: []string{"x"}, Action: "SCMP_ACT_ALLOW"}}},
		},
	}
	for _, tc := range []struct {
		name string
		spec specs.Spec
	}{{"zero", specs.Spec{}}, {"full", full}} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := goValue(reflect.ValueOf(&tc.spec))
			if err != nil {
				t.Fatal(err)
			}
			b, err := json.Marshal(&tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			want, err := jsonValue(b)
			if err != nil {
				t.Fatal(err)
			}
			if got.Compare(want) != 0 {
				t.Fatalf("\n got %v\nwant %v", got, want)
			}
		})
	}
}
