package events

import (
	"errors"
	"testing"
)

func TestReportRoundTrip(t *testing.T) {
	r := Report{Version: ReportVersion, Instance: "a1", Service: "shop", Host: "h", Seq: 7, StalenessMS: 3, Ready: true, IntervalMS: 2000}
	b, err := EncodeReport(r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeReport(ReportSubject("a1"), b)
	if err != nil || got != r {
		t.Fatalf("DecodeReport = %+v, %v; want %+v", got, err, r)
	}
	if _, err := DecodeReport(ReportSubject("other"), b); !errors.Is(err, ErrInvalidEvent) {
		t.Fatalf("report on another instance's subject: err = %v, want ErrInvalidEvent", err)
	}
	for name, data := range map[string]string{
		"ErrNotJSON":   "nope",
		"ErrVersion":   `{"v":2,"instance":"a1","interval_ms":1}`,
		"ErrBadID":     `{"v":1,"instance":"a.1","interval_ms":1}`,
		"ErrInterval":  `{"v":1,"instance":"a1","interval_ms":0}`,
		"ErrControl":   `{"v":1,"instance":"a1","interval_ms":1,"service":"a\nb"}`,
		"ErrStaleness": `{"v":1,"instance":"a1","interval_ms":1,"staleness_ms":-5}`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := DecodeReport(ReportSubject("a1"), []byte(data)); err == nil {
				t.Fatalf("DecodeReport(%s) accepted it", data)
			}
		})
	}
}

func TestApplied(t *testing.T) {
	id, seq, err := DecodeApplied(AppliedSubject("x_1"), EncodeApplied(42))
	if err != nil || id != "x_1" || seq != 42 {
		t.Fatalf("DecodeApplied = %q, %d, %v", id, seq, err)
	}
	for _, bad := range [][2]string{{AppliedSubject("x"), "-1"}, {AppliedSubject("x"), ""}, {"revocast.fleet.applied.a.b", "1"}, {ReportSubject("x"), "1"}} {
		if _, _, err := DecodeApplied(bad[0], []byte(bad[1])); err == nil {
			t.Fatalf("DecodeApplied(%q, %q) accepted it", bad[0], bad[1])
		}
	}
}
