package jobs

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/ferrydrive/ferry"
	"github.com/ferrydrive/ferry/blob"
)

// checkpointVersion is the version of the checkpoint encoding written now.
//
//	1  (no "v" field) the single-stream checkpoint: a contiguous offset,
//	   its hash state, the validator, and the published blob once set.
//	2  one of two states (fetching with the written ranges, or
//	   published), plus the history both share.
//
// Every older version is decoded (decodeCheckpoint), so that jobs in an
// existing database resume after an upgrade.
const checkpointVersion = 2

// checkpoint is the durable form of an import between attempts: its
// history, and exactly one of its states. The staging area's ID is
// recorded next to it (Store.SaveJobCheckpoint), not in it.
type checkpoint struct {
	V         int        `json:"v"`
	History   history    `json:"history"`
	Fetching  *fetching  `json:"fetching,omitempty"`
	Published *published `json:"published,omitempty"`
}

// history is what an import keeps across attempts and restarts.
type history struct {
	// Started is when the first attempt began; Config.MaxDuration counts
	// from it, so time spent queued behind other jobs does not count.
	Started time.Time `json:"started,omitzero"`
	Stalls  int       `json:"stalls,omitempty"` // consecutive attempts without new bytes
	Best    int64     `json:"best,omitempty"`   // most bytes staged by any attempt
}

// encodeCheckpoint encodes h and the state s (*fetching or *published).
func encodeCheckpoint(h history, s state) ([]byte, error) {
	cp := checkpoint{V: checkpointVersion, History: h}
	switch s := s.(type) {
	case *fetching:
		cp.Fetching = s
	case *published:
		cp.Published = s
	default:
		return nil, fmt.Errorf("jobs: no checkpoint for state %T", s)
	}
	return json.Marshal(cp)
}

// decodeCheckpoint decodes any version. Empty data is a fresh import.
func decodeCheckpoint(data []byte) (history, state, error) {
	if len(data) == 0 {
		return history{}, newFetching(), nil
	}
	var probe struct {
		V int `json:"v"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return history{}, nil, fmt.Errorf("jobs: checkpoint: %w", err)
	}
	switch probe.V {
	case 0, 1:
		return decodeV1(data)
	case 2:
		var cp checkpoint
		if err := json.Unmarshal(data, &cp); err != nil {
			return history{}, nil, fmt.Errorf("jobs: checkpoint v2: %w", err)
		}
		switch {
		case cp.Published != nil && cp.Published.Key != "":
			return cp.History, cp.Published, nil
		case cp.Fetching != nil:
			if cp.Fetching.Source.Total == 0 && len(cp.Fetching.Written) == 0 {
				cp.Fetching.Source.Total = -1
			}
			return cp.History, cp.Fetching, nil
		}
		return cp.History, newFetching(), nil
	}
	return history{}, nil, fmt.Errorf("jobs: checkpoint version %d is newer than this program", probe.V)
}

// checkpointV1 is version 1: one contiguous prefix, or a published blob.
type checkpointV1 struct {
	Offset       int64        `json:"offset"`
	Total        int64        `json:"total"`
	ETag         string       `json:"etag,omitempty"`
	LastModified string       `json:"lastModified,omitempty"`
	Hash         []byte       `json:"hash,omitempty"`
	Name         string       `json:"name,omitempty"`
	ContentType  string       `json:"contentType,omitempty"`
	Stalls       int          `json:"stalls,omitempty"`
	Best         int64        `json:"best,omitempty"`
	Started      time.Time    `json:"started,omitzero"`
	BlobKey      string       `json:"blobKey,omitempty"`
	Size         int64        `json:"size,omitempty"`
	Hashes       ferry.Hashes `json:"hashes,omitzero"`
	Mime         string       `json:"mime,omitempty"`
	FileName     string       `json:"fileName,omitempty"`
}

func decodeV1(data []byte) (history, state, error) {
	v1 := checkpointV1{Total: -1}
	if err := json.Unmarshal(data, &v1); err != nil {
		return history{}, nil, fmt.Errorf("jobs: checkpoint v1: %w", err)
	}
	h := history{Started: v1.Started, Stalls: v1.Stalls, Best: v1.Best}
	if v1.BlobKey != "" {
		return h, &published{Key: v1.BlobKey, Size: v1.Size, Hashes: v1.Hashes, Mime: v1.Mime, FileName: v1.FileName}, nil
	}
	f := newFetching()
	f.Source = sourceInfo{ETag: v1.ETag, LastModified: v1.LastModified, Total: v1.Total,
		Name: v1.Name, ContentType: v1.ContentType}
	if v1.Offset > 0 {
		f.Written = []blob.Range{{Start: 0, End: v1.Offset}}
		if len(v1.Hash) > 0 {
			f.Hashed, f.Hash = v1.Offset, v1.Hash
		}
	}
	return h, f, nil
}

// heldBlob returns the published blob a checkpoint holds, or "".
func heldBlob(data []byte) string {
	_, s, err := decodeCheckpoint(data)
	if p, ok := s.(*published); ok && err == nil {
		return p.Key
	}
	return ""
}
