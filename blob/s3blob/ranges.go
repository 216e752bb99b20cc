package s3blob

import "slices"

// span is the byte range [lo, hi).
type span struct{ lo, hi int64 }

func (s span) len() int64 { return s.hi - s.lo }

// ranges is a set of bytes kept as sorted, disjoint, non-adjacent spans.
type ranges []span

// add puts [lo, hi) in the set.
func (r ranges) add(lo, hi int64) ranges {
	if lo >= hi {
		return r
	}
	out := make(ranges, 0, len(r)+1)
	for _, s := range r {
		switch {
		case s.hi < lo || s.lo > hi: // apart, not even touching
			out = append(out, s)
		default:
			lo, hi = min(lo, s.lo), max(hi, s.hi)
		}
	}
	out = append(out, span{lo, hi})
	slices.SortFunc(out, func(a, b span) int { return cmpInt(a.lo, b.lo) })
	return out
}

// remove takes [lo, hi) out of the set.
func (r ranges) remove(lo, hi int64) ranges {
	if lo >= hi {
		return r
	}
	out := make(ranges, 0, len(r)+1)
	for _, s := range r {
		if s.hi <= lo || s.lo >= hi {
			out = append(out, s)
			continue
		}
		if s.lo < lo {
			out = append(out, span{s.lo, lo})
		}
		if s.hi > hi {
			out = append(out, span{hi, s.hi})
		}
	}
	return out
}

// clip returns the parts of the set inside [lo, hi).
func (r ranges) clip(lo, hi int64) ranges {
	var out ranges
	for _, s := range r {
		if s.hi <= lo || s.lo >= hi {
			continue
		}
		out = append(out, span{max(s.lo, lo), min(s.hi, hi)})
	}
	return out
}

// covers reports whether every byte of [lo, hi) is in the set.
func (r ranges) covers(lo, hi int64) bool {
	for _, s := range r {
		if s.lo <= lo && s.hi >= hi {
			return true
		}
	}
	return lo >= hi
}

// end is one past the last byte in the set, 0 when empty.
func (r ranges) end() int64 {
	if len(r) == 0 {
		return 0
	}
	return r[len(r)-1].hi
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
