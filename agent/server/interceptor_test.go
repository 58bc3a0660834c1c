package server

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/veil-runtime/veil/agent/api"
)

func TestInterceptor(t *testing.T) {
	info := &ttrpc.UnaryServerInfo{FullMethod: "/" + api.ServiceName + "/Test"}
	noUnmarshal := func(any) error { return nil }
	for _, tc := range []struct {
		name    string
		handler ttrpc.Method
		want    codes.Code
	}{
		{"ok", func(context.Context, func(any) error) (any, error) { return &api.Empty{}, nil }, codes.OK},
		{"panic", func(context.Context, func(any) error) (any, error) { panic("boom") }, codes.Internal},
		{"nil map panic", func(context.Context, func(any) error) (any, error) {
			var m map[string]int
			m["x"] = 1
			return nil, nil
		}, codes.Internal},
		{"not found", func(context.Context, func(any) error) (any, error) {
			return nil, fmt.Errorf("container c1: %w", errdefs.ErrNotFound)
		}, codes.NotFound},
		{"invalid", func(context.Context, func(any) error) (any, error) {
			return nil, fmt.Errorf("path: %w", errdefs.ErrInvalidArgument)
		}, codes.InvalidArgument},
		{"precondition", func(context.Context, func(any) error) (any, error) {
			return nil, fmt.Errorf("container c1 is stopped: %w", errdefs.ErrFailedPrecondition)
		}, codes.FailedPrecondition},
		{"plain error", func(context.Context, func(any) error) (any, error) {
			return nil, errors.New("something")
		}, codes.Unknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := Interceptor(context.Background(), noUnmarshal, info, tc.handler)
			if got := status.Code(err); got != tc.want {
				t.Fatalf("code = %v (err %v), want %v", got, err, tc.want)
			}
			if tc.want == codes.OK && resp == nil {
				t.Fatal("no response")
			}
			if tc.want != codes.OK && resp != nil {
				t.Fatalf("response %v with an error", resp)
			}
		})
	}
}
