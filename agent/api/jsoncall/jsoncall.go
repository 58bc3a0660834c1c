// Package jsoncall calls any method of the agent API by name with a JSON request and returns
// the JSON reply: the raw access that veil-ctl's `call` and the tests use to reach every
// request, including malformed or forbidden ones, without a typed wrapper per method.
package jsoncall

import (
	"context"
	"fmt"
	"sort"

	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/veil-runtime/veil/agent/api"
)

func service() protoreflect.ServiceDescriptor { return api.ServiceDescriptor() }

// Methods lists the names of every method of the agent API, sorted.
func Methods() []string {
	ms := service().Methods()
	names := make([]string, 0, ms.Len())
	for i := 0; i < ms.Len(); i++ {
		names = append(names, string(ms.Get(i).Name()))
	}
	sort.Strings(names)
	return names
}

// Call sends the request given as JSON (protobuf's JSON mapping; "" means an empty message) to
// method and returns the reply as JSON.
func Call(ctx context.Context, c *ttrpc.Client, method, requestJSON string) ([]byte, error) {
	md := service().Methods().ByName(protoreflect.Name(method))
	if md == nil {
		return nil, fmt.Errorf("agent API has no method %q (have %v)", method, Methods())
	}
	req := dynamicpb.NewMessage(md.Input())
	if requestJSON != "" {
		if err := protojson.Unmarshal([]byte(requestJSON), req); err != nil {
			return nil, fmt.Errorf("request for %s is not a valid %s in JSON: %w", method, md.Input().FullName(), err)
		}
	}
	resp := dynamicpb.NewMessage(md.Output())
	if err := c.Call(ctx, api.ServiceName, method, req, resp); err != nil {
		return nil, fmt.Errorf("%s: %w", method, err)
	}
	return protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(resp)
}
