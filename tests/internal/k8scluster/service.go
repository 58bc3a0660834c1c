package k8scluster

import (
	"encoding/binary"
	"fmt"
	"net"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// serviceTable is the nftables table (ip family, the host's network namespace) that routes
// the kubernetes Service's ClusterIP to the apiserver, as kube-proxy would: pods (the node
// installer, any in-cluster client) reach the API at KUBERNETES_SERVICE_HOST, ServiceIP:443.
// Nothing else of Kubernetes' Service routing is there (no kube-proxy).
const serviceTable = "veil_k8s"

// routeAPIService adds serviceTable: TCP to ServiceIP:443 arriving from the pods (prerouting)
// goes to the apiserver on NodeIP:port.
func (h *hostState) routeAPIService(port int) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	h.ServiceTable = serviceTable
	if err := h.save(); err != nil {
		return err
	}
	table := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: serviceTable}
	c.DelTable(table) // one left by a crashed run
	_ = c.Flush()
	c.AddTable(table)
	chain := c.AddChain(&nftables.Chain{
		Name: "prerouting", Table: table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest,
	})
	dport := binary.BigEndian.AppendUint16(nil, 443)
	to := binary.BigEndian.AppendUint16(nil, uint16(port))
	c.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4}, // ip daddr
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: net.ParseIP(ServiceIP).To4()},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}, // tcp dport
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: dport},
		&expr.Immediate{Register: 1, Data: net.ParseIP(NodeIP).To4()},
		&expr.Immediate{Register: 2, Data: to},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
	}})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables table %s: %w", serviceTable, err)
	}
	return nil
}

// unrouteAPIService removes serviceTable when the cluster made it.
func (h *hostState) unrouteAPIService() {
	if h.ServiceTable == "" {
		return
	}
	c, err := nftables.New()
	if err != nil {
		return
	}
	c.DelTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: h.ServiceTable})
	_ = c.Flush()
}
