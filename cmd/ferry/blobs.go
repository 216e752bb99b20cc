package main

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/ferrydrive/ferry"
	"github.com/ferrydrive/ferry/blob/fsblob"
	"github.com/ferrydrive/ferry/blob/s3blob"
)

// openBlobs opens the blob store --blobs names: local files in --data, or
// an S3 bucket, checked with one request so that a wrong endpoint,
// bucket or credential stops the server at start with a plain message.
func openBlobs(ctx context.Context, cfg Config) (ferry.BlobStore, error) {
	if cfg.Blobs == "" {
		return fsblob.New(filepath.Join(cfg.Data, "blobs"))
	}
	bucket, prefix, err := s3blob.ParseLocation(cfg.Blobs) // checked by Validate
	if err != nil {
		return nil, err
	}
	s, err := s3blob.New(s3blob.Options{
		Endpoint:     cfg.S3Endpoint,
		Region:       cfg.S3Region,
		PathStyle:    cfg.S3PathStyle,
		Bucket:       bucket,
		Prefix:       prefix,
		AccessKey:    cfg.S3AccessKey,
		SecretKey:    cfg.S3SecretKey,
		SessionToken: cfg.S3Session,
		SpoolDir:     filepath.Join(cfg.Data, "s3spool"),
		Presign:      cfg.S3Presign,
	})
	if err != nil {
		return nil, err
	}
	if err := s.Check(ctx); err != nil {
		return nil, fmt.Errorf("blob store %s: %w", cfg.Blobs, err)
	}
	return s, nil
}
