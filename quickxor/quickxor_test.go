package quickxor_test

import (
	"bufio"
	"bytes"
	"encoding"
	"encoding/base64"
	"fmt"
	"hash"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/ferrydrive/ferry/quickxor"
)

// naive is the per-byte reference model of graph-contract.md §7.1: each
// byte is XORed into the 160-bit state at bit offset 11*i mod 160. It is
// slow and obviously correct, and the fast implementation must agree with
// it on every input.
type naive struct {
	acc [20]byte
	n   uint64
}

func (h *naive) Write(p []byte) (int, error) {
	for _, b := range p {
		off := h.n * 11 % 160
		bi, sh := off/8, off%8
		h.acc[bi] ^= b << sh
		if sh != 0 {
			h.acc[(bi+1)%20] ^= b >> (8 - sh)
		}
		h.n++
	}
	return len(p), nil
}

func (h *naive) Sum(b []byte) []byte {
	out := h.acc
	for i := range 8 {
		out[12+i] ^= byte(h.n >> (8 * i))
	}
	return append(b, out[:]...)
}

func (h *naive) Reset()         { *h = naive{} }
func (h *naive) Size() int      { return 20 }
func (h *naive) BlockSize() int { return 64 }

type vector struct {
	name string
	in   []byte
	want string // standard base64
}

// rcloneVectors reads testdata/vectors.txt (graph-contract.md §7.2).
func rcloneVectors(t testing.TB) []vector {
	t.Helper()
	f, err := os.Open("testdata/vectors.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var vs []vector
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 3 {
			t.Fatalf("bad vector line %q", line)
		}
		size, err := strconv.Atoi(fields[0])
		if err != nil {
			t.Fatalf("bad size in %q", line)
		}
		var in []byte
		if fields[1] != "-" {
			if in, err = base64.StdEncoding.DecodeString(fields[1]); err != nil {
				t.Fatalf("bad input in %q: %v", line, err)
			}
		}
		if len(in) != size {
			t.Fatalf("vector %d: input has %d bytes", size, len(in))
		}
		vs = append(vs, vector{"rclone/" + fields[0], in, fields[2]})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(vs) != 70 {
		t.Fatalf("read %d rclone vectors, want 70", len(vs))
	}
	return vs
}

// extraVectors are graph-contract.md §7.3.
func extraVectors() []vector {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	return []vector{
		{"ascii/empty", []byte(""), "AAAAAAAAAAAAAAAAAAAAAAAAAAA="},
		{"ascii/a", []byte("a"), "YQAAAAAAAAAAAAAAAQAAAAAAAAA="},
		{"ascii/A", []byte("A"), "QQAAAAAAAAAAAAAAAQAAAAAAAAA="},
		{"ascii/hello", []byte("hello"), "aCgDG9jwBgAAAAAABQAAAAAAAAA="},
		{"ascii/hello_world", []byte("hello world"), "aCgDG9jwBhDc4Q1yawMZAAAAAAA="},
		{"ascii/Hello,_World!", []byte("Hello, World!"), "SCgDG9jwBhaA4ApvnQMbyBACAAA="},
		{"ascii/quick_brown_fox", []byte("The quick brown fox jumps over the lazy dog"), "bMSlbysmxJL6S75XwfMcQZOpcr4="},
		{"bytes/00-ff", all, "QkGEfSisZcA7k+FCh71r2dbCayY="},
		{"ascii/160xA", bytes.Repeat([]byte("A"), 160), "AAAAAAAAAAAAAAAAoAAAAAAAAAA="},
		{"zeros/1000", make([]byte, 1000), "AAAAAAAAAAAAAAAA6AMAAAAAAAA="},
		{"zeros/1MiB", make([]byte, 1<<20), "AAAAAAAAAAAAAAAAAAAQAAAAAAA="},
	}
}

var chunkSizes = []int{1, 2, 3, 4, 7, 8, 16, 32, 64, 128, 159, 160, 161, 256, 512}

func sum64(h hash.Hash) string { return base64.StdEncoding.EncodeToString(h.Sum(nil)) }

// writeChunks feeds p to h in pieces of at most size bytes.
func writeChunks(h hash.Hash, p []byte, size int) {
	for len(p) > 0 {
		k := min(size, len(p))
		h.Write(p[:k])
		p = p[k:]
	}
}

func TestVectors(t *testing.T) {
	for _, v := range append(rcloneVectors(t), extraVectors()...) {
		t.Run(v.name, func(t *testing.T) {
			for _, impl := range []struct {
				name string
				new  func() hash.Hash
			}{{"fast", quickxor.New}, {"naive", func() hash.Hash { return new(naive) }}} {
				if impl.name == "naive" && len(v.in) > 1<<16 {
					continue // the model is slow; it is checked on big inputs by TestAgainstModel
				}
				h := impl.new()
				h.Write(v.in)
				if got := sum64(h); got != v.want {
					t.Errorf("%s, whole: got %s, want %s", impl.name, got, v.want)
				}
				for _, size := range chunkSizes {
					h := impl.new()
					writeChunks(h, v.in, size)
					if got := sum64(h); got != v.want {
						t.Errorf("%s, chunks of %d: got %s, want %s", impl.name, size, got, v.want)
					}
				}
			}
		})
	}
}

func TestSizes(t *testing.T) {
	h := quickxor.New()
	if got := h.Size(); got != 20 {
		t.Errorf("Size() = %d, want 20", got)
	}
	if got := h.BlockSize(); got != 64 {
		t.Errorf("BlockSize() = %d, want 64", got)
	}
	if got := len(h.Sum(nil)); got != quickxor.Size {
		t.Errorf("len(Sum(nil)) = %d, want %d", got, quickxor.Size)
	}
}

func TestSumAppendsAndIsIdempotent(t *testing.T) {
	h := quickxor.New()
	h.Write([]byte("hello"))
	first := h.Sum([]byte("prefix"))
	if !bytes.HasPrefix(first, []byte("prefix")) || len(first) != len("prefix")+20 {
		t.Fatalf("Sum(prefix) = %x, want prefix followed by 20 bytes", first)
	}
	if second := h.Sum([]byte("prefix")); !bytes.Equal(first, second) {
		t.Errorf("second Sum = %x, want %x", second, first)
	}
	h.Write([]byte(" world"))
	if got, want := sum64(h), "aCgDG9jwBhDc4Q1yawMZAAAAAAA="; got != want {
		t.Errorf("after Sum and more writes: got %s, want %s", got, want)
	}
}

func TestReset(t *testing.T) {
	h := quickxor.New()
	h.Write(bytes.Repeat([]byte{0x5a}, 3000))
	h.Reset()
	if got, want := sum64(h), "AAAAAAAAAAAAAAAAAAAAAAAAAAA="; got != want {
		t.Errorf("after Reset: got %s, want %s", got, want)
	}
	h.Write([]byte("hello world"))
	if got, want := sum64(h), "aCgDG9jwBhDc4Q1yawMZAAAAAAA="; got != want {
		t.Errorf("after Reset and Write: got %s, want %s", got, want)
	}
}

func TestMarshalMidStream(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 5000)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	ref := new(naive)
	ref.Write(data)
	want := base64.StdEncoding.EncodeToString(ref.Sum(nil))

	for _, cut := range []int{0, 1, 159, 160, 161, 1279, 1280, 1281, 2500, 4999, 5000} {
		t.Run(strconv.Itoa(cut), func(t *testing.T) {
			h := quickxor.New()
			writeChunks(h, data[:cut], 37)
			state, err := h.(encoding.BinaryMarshaler).MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			h.Write([]byte("garbage that must not survive"))

			restored := quickxor.New()
			restored.Write([]byte("stale state that must be overwritten"))
			if err := restored.(encoding.BinaryUnmarshaler).UnmarshalBinary(state); err != nil {
				t.Fatal(err)
			}
			writeChunks(restored, data[cut:], 61)
			if got := sum64(restored); got != want {
				t.Errorf("restored at %d: got %s, want %s", cut, got, want)
			}

			appended, err := h.(encoding.BinaryAppender).AppendBinary([]byte("x"))
			if err != nil {
				t.Fatal(err)
			}
			if len(appended) != 1+len(state) || appended[0] != 'x' {
				t.Errorf("AppendBinary did not append a state of %d bytes: got %d bytes", len(state), len(appended))
			}
		})
	}
}

func TestUnmarshalRejectsGarbage(t *testing.T) {
	h := quickxor.New()
	good, _ := h.(encoding.BinaryMarshaler).MarshalBinary()
	bad := bytes.Clone(good)
	bad[0] ^= 1
	for name, b := range map[string][]byte{
		"empty": nil, "short": good[:len(good)-1], "long": append(bytes.Clone(good), 0), "magic": bad,
	} {
		t.Run(name, func(t *testing.T) {
			if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(b); err == nil {
				t.Error("UnmarshalBinary accepted an invalid state")
			}
		})
	}
}

// TestAgainstModel compares the fast hash with the per-byte model on random
// inputs of random lengths written in random chunk sizes.
func TestAgainstModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	for i := range 300 {
		var n int
		switch i % 3 {
		case 0:
			n = rng.IntN(400)
		case 1:
			n = rng.IntN(5000)
		default:
			n = rng.IntN(200000)
		}
		data := make([]byte, n)
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		ref := new(naive)
		writeChunks(ref, data, 1+rng.IntN(300))
		h := quickxor.New()
		for p := data; len(p) > 0; {
			k := min(len(p), rng.IntN(3000))
			h.Write(p[:k])
			p = p[k:]
		}
		if got, want := h.Sum(nil), ref.Sum(nil); !bytes.Equal(got, want) {
			t.Fatalf("input %d (%d bytes): got %x, want %x", i, n, got, want)
		}
	}
}

func benchmarkHash(b *testing.B, h hash.Hash) {
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		h.Write(buf)
	}
	_ = h.Sum(nil)
}

// BenchmarkQuickXor and BenchmarkQuickXorNaive run side by side so that
// `go test -bench .` shows how much faster fold-then-spread is.
func BenchmarkQuickXor(b *testing.B)      { benchmarkHash(b, quickxor.New()) }
func BenchmarkQuickXorNaive(b *testing.B) { benchmarkHash(b, new(naive)) }

func ExampleNew() {
	h := quickxor.New()
	h.Write([]byte("hello world"))
	fmt.Println(base64.StdEncoding.EncodeToString(h.Sum(nil)))
	// Output: aCgDG9jwBhDc4Q1yawMZAAAAAAA=
}
