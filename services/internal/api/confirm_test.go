package api

import "testing"

func TestPreferWait(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		n    int
		want bool
	}{
		{nil, 0, false},
		{[]string{"wait=5"}, 5, true},
		{[]string{"return=minimal, wait=3"}, 3, true},
		{[]string{"respond-async", "Wait = \"2\"; foo=bar"}, 2, true},
		{[]string{"wait=60"}, MaxPreferWait, true},
		{[]string{"wait=0"}, 0, true},
		{[]string{"wait=-1"}, 0, false},
		{[]string{"wait=soon"}, 0, false},
		{[]string{"wait"}, 0, false},
		{[]string{"nowait=5"}, 0, false},
	} {
		n, ok := preferWait(tc.in)
		if n != tc.n || ok != tc.want {
			t.Errorf("preferWait(%q) = %d, %v; want %d, %v", tc.in, n, ok, tc.n, tc.want)
		}
	}
}
