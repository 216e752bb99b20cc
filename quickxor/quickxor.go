// Package quickxor implements quickXorHash, the content hash OneDrive and
// Microsoft Graph report for files (hashes.quickXorHash), as a hash.Hash.
//
// The hash XORs byte i of the input into a 160-bit accumulator at bit
// offset 11*i mod 160 and finally XORs the input length, as 8 little-endian
// bytes, into the last 64 bits. The result is 20 bytes, shown to clients in
// standard base64 (28 characters).
//
// Because 160*11 is a multiple of 160, bytes i and i+160 land at the same
// offset. Write therefore only folds the input into a byte accumulator
// (with crypto/subtle.XORBytes, which is vectorised) and Sum spreads the
// folded bytes into the 160-bit state once, so the cost per byte is one
// XOR and the hash runs at memory speed.
package quickxor

import (
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"hash"
)

// Size is the size of a quickXorHash digest in bytes.
const Size = 20

// BlockSize is the block size reported by BlockSize. quickXorHash has no
// real block structure; 64 is the value other implementations report.
const BlockSize = 64

const (
	width = 160 // accumulator width in bits, and the fold period in bytes
	shift = 11  // bit offset added per input byte

	// wide is the size of the fold buffer. Any multiple of width folds to
	// the same result; a wider buffer means fewer, longer XORBytes calls.
	wide = width * 8

	magic     = "qxh\x01"
	stateSize = len(magic) + width + 8
)

// digest is the fold-then-spread implementation. acc[j] holds the XOR of
// every input byte whose position is congruent to j modulo wide; n counts
// all bytes written.
type digest struct {
	acc [wide]byte
	n   uint64
}

// New returns a new quickXorHash. The result also implements
// encoding.BinaryMarshaler, encoding.BinaryAppender and
// encoding.BinaryUnmarshaler, so its state can be saved mid-stream and
// restored later, as with crypto/sha1.
func New() hash.Hash {
	return new(digest)
}

func (d *digest) Size() int      { return Size }
func (d *digest) BlockSize() int { return BlockSize }

func (d *digest) Reset() {
	*d = digest{}
}

// Write never fails.
func (d *digest) Write(p []byte) (int, error) {
	n := len(p)
	pos := int(d.n % wide)
	d.n += uint64(n)
	for len(p) > 0 {
		k := subtle.XORBytes(d.acc[pos:], d.acc[pos:], p)
		p = p[k:]
		pos += k
		if pos == wide {
			pos = 0
		}
	}
	return n, nil
}

// fold reduces the wide accumulator to its 160 residues.
func (d *digest) fold() (f [width]byte) {
	copy(f[:], d.acc[:width])
	for i := width; i < wide; i += width {
		subtle.XORBytes(f[:], f[:], d.acc[i:i+width])
	}
	return f
}

// Sum appends the digest to b. It does not change the state.
func (d *digest) Sum(b []byte) []byte {
	f := d.fold()
	var st [Size + 1]byte // one spare byte absorbs the carry of the last residue
	for j, v := range f {
		bit := j * shift % width
		idx, off := bit/8, uint(bit%8)
		w := uint16(v) << off
		st[idx] ^= byte(w)
		st[idx+1] ^= byte(w >> 8)
	}
	st[0] ^= st[Size] // the carry out of byte 19 wraps to byte 0
	var l [8]byte
	binary.LittleEndian.PutUint64(l[:], d.n)
	subtle.XORBytes(st[Size-8:Size], st[Size-8:Size], l[:])
	return append(b, st[:Size]...)
}

// AppendBinary appends the hash state to b: a 4-byte magic, the 160 folded
// accumulator bytes and the length as 8 big-endian bytes.
func (d *digest) AppendBinary(b []byte) ([]byte, error) {
	f := d.fold()
	b = append(b, magic...)
	b = append(b, f[:]...)
	return binary.BigEndian.AppendUint64(b, d.n), nil
}

// MarshalBinary returns the hash state; see AppendBinary.
func (d *digest) MarshalBinary() ([]byte, error) {
	return d.AppendBinary(make([]byte, 0, stateSize))
}

// UnmarshalBinary restores a state saved by MarshalBinary.
func (d *digest) UnmarshalBinary(b []byte) error {
	if len(b) != stateSize || string(b[:len(magic)]) != magic {
		return errors.New("quickxor: invalid hash state")
	}
	d.Reset()
	// The folded bytes go to residues 0..159 of the wide buffer; the rest
	// stays zero, so folding again gives the same 160 bytes whatever
	// position the next Write starts at.
	copy(d.acc[:width], b[len(magic):len(magic)+width])
	d.n = binary.BigEndian.Uint64(b[len(magic)+width:])
	return nil
}
