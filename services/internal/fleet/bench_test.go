package fleet

import (
	"fmt"
	"testing"

	"github.com/revocast/revocast/events"
)

// BenchmarkHandleReport is the cost of one presence report in a fleet of 1,000: decode,
// check, update. Its inverse is how many reports a second one core absorbs.
func BenchmarkHandleReport(b *testing.B) {
	const n = 1000
	f := New(nil, nil)
	subjects, data := make([]string, n), make([][]byte, n)
	for i := range n {
		id := fmt.Sprintf("sim-%04d", i)
		subjects[i] = events.ReportSubject(id)
		data[i], _ = events.EncodeReport(events.Report{Version: events.ReportVersion, Instance: id, Service: "sim", Host: "bench-host",
			ClientVersion: "v1.0.0", Seq: 1, StalenessMS: 120, Ready: true, IntervalMS: 2000})
		f.Handle(subjects[i], data[i])
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		f.Handle(subjects[i%n], data[i%n])
	}
}
