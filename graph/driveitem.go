package graph

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/ferrydrive/ferry"
)

// driveType is what every Ferry drive reports: one drive per user.
const driveType = "personal"

// graphTime formats t the way every Graph client parses it: UTC, a literal
// Z, at most milliseconds (rclone's layout is "2006-01-02T15:04:05.999Z").
// The zero time gives "" so that omitempty leaves the key out: never null.
func graphTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Truncate(time.Millisecond).Format("2006-01-02T15:04:05.999") + "Z"
}

type identity struct {
	ID          string `json:"id,omitempty"`
	DisplayName string `json:"displayName"`
	Email       string `json:"email,omitempty"`
}

type identitySet struct {
	User identity `json:"user"`
}

type quota struct {
	Total     int64  `json:"total"`
	Used      int64  `json:"used"`
	Remaining int64  `json:"remaining"`
	Deleted   int64  `json:"deleted"`
	State     string `json:"state"`
}

// driveJSON is the Graph drive resource.
type driveJSON struct {
	ID                   string      `json:"id"`
	DriveType            string      `json:"driveType"`
	Name                 string      `json:"name"`
	CreatedDateTime      string      `json:"createdDateTime,omitempty"`
	LastModifiedDateTime string      `json:"lastModifiedDateTime,omitempty"`
	Owner                identitySet `json:"owner"`
	Quota                quota       `json:"quota"`
}

func newDriveJSON(d *ferry.Drive) driveJSON {
	return driveJSON{
		ID:                   string(d.ID),
		DriveType:            driveType,
		Name:                 "OneDrive",
		CreatedDateTime:      graphTime(d.Created),
		LastModifiedDateTime: graphTime(d.Modified),
		Owner:                identitySet{User: identity{ID: string(d.Owner), DisplayName: d.OwnerName}},
		Quota: quota{
			Total:     d.Quota,
			Used:      d.Used,
			Remaining: d.Remaining(),
			State:     quotaState(d),
		},
	}
}

// quotaState follows Graph: nearing under 10 % left, critical under 1 %,
// exceeded when more is used than allowed.
func quotaState(d *ferry.Drive) string {
	switch {
	case d.Quota <= 0:
		return "normal"
	case d.Used > d.Quota:
		return "exceeded"
	case d.Remaining()*100 < d.Quota:
		return "critical"
	case d.Remaining()*10 < d.Quota:
		return "nearing"
	}
	return "normal"
}

type itemReference struct {
	DriveID   string `json:"driveId"`
	DriveType string `json:"driveType"`
	ID        string `json:"id,omitempty"`
	Path      string `json:"path,omitempty"`
}

type hashesJSON struct {
	QuickXorHash string `json:"quickXorHash,omitempty"`
	SHA1Hash     string `json:"sha1Hash,omitempty"`
	SHA256Hash   string `json:"sha256Hash,omitempty"`
}

type fileFacet struct {
	MimeType string     `json:"mimeType"`
	Hashes   hashesJSON `json:"hashes"`
}

type folderFacet struct {
	ChildCount int64 `json:"childCount"`
}

type fileSystemInfo struct {
	CreatedDateTime      string `json:"createdDateTime,omitempty"`
	LastModifiedDateTime string `json:"lastModifiedDateTime,omitempty"`
}

// driveItem is the Graph driveItem resource as Ferry emits it.
type driveItem struct {
	ID                   string         `json:"id"`
	Name                 string         `json:"name"`
	Size                 int64          `json:"size"`
	ETag                 string         `json:"eTag"`
	CTag                 string         `json:"cTag"`
	CreatedDateTime      string         `json:"createdDateTime,omitempty"`
	LastModifiedDateTime string         `json:"lastModifiedDateTime,omitempty"`
	Description          string         `json:"description,omitempty"`
	ParentReference      itemReference  `json:"parentReference"`
	File                 *fileFacet     `json:"file,omitempty"`
	Folder               *folderFacet   `json:"folder,omitempty"`
	Root                 *struct{}      `json:"root,omitempty"`
	FileSystemInfo       fileSystemInfo `json:"fileSystemInfo"`
	CreatedBy            identitySet    `json:"createdBy"`
	LastModifiedBy       identitySet    `json:"lastModifiedBy"`
	DownloadURL          string         `json:"@microsoft.graph.downloadUrl,omitempty"`
	Children             []any          `json:"children,omitempty"`
	ChildrenNextLink     string         `json:"children@odata.nextLink,omitempty"`
}

// itemView turns domain items into driveItems; it knows how to build
// absolute download URLs.
type itemView struct {
	urls *urlBuilder
	sign *signer
}

// render builds the driveItem of it, whose parent has the path parentNames
// below the root (nil for the root's children and for the root).
func (v *itemView) render(r *http.Request, d *ferry.Drive, it *ferry.Item, parentNames []string) *driveItem {
	user := func(name string) identitySet {
		id := identity{DisplayName: name}
		if name == d.OwnerName {
			id.ID = string(d.Owner)
		}
		return identitySet{User: id}
	}
	// The item's createdDateTime is its birth time as OneDrive for Business
	// reports it: the client's fileSystemInfo.createdDateTime once one was
	// set (SharePoint's Created field), else when the server created it.
	// rclone's Business metadata reads it as "utime" and expects exactly
	// that. lastModifiedDateTime stays the server's own time, which sync
	// clients compare.
	di := &driveItem{
		ID:                   string(it.ID),
		Name:                 it.Name,
		Size:                 it.Size,
		ETag:                 it.ETag(),
		CTag:                 it.CTag(),
		CreatedDateTime:      graphTime(orTime(it.FSCreated, it.Created)),
		LastModifiedDateTime: graphTime(it.Modified),
		Description:          it.Description,
		ParentReference:      itemReference{DriveID: string(d.ID), DriveType: driveType},
		FileSystemInfo: fileSystemInfo{
			CreatedDateTime:      graphTime(orTime(it.FSCreated, it.Created)),
			LastModifiedDateTime: graphTime(orTime(it.FSModified, it.Modified)),
		},
		CreatedBy:      user(it.CreatedBy),
		LastModifiedBy: user(it.ModifiedBy),
	}
	if it.IsRoot() {
		di.Root = &struct{}{}
		di.Name = "root"
	} else {
		di.ParentReference.ID = string(it.ParentID)
		di.ParentReference.Path = "/drive/root:" + escapeItemPath(parentNames)
	}
	if it.Folder {
		di.Folder = &folderFacet{ChildCount: it.ChildCount}
	} else {
		mime := it.MimeType
		if mime == "" {
			mime = "application/octet-stream"
		}
		di.File = &fileFacet{MimeType: mime, Hashes: hashesJSON{
			QuickXorHash: it.Hashes.QuickXor,
			SHA1Hash:     it.Hashes.SHA1,
			SHA256Hash:   it.Hashes.SHA256,
		}}
		di.DownloadURL = downloadURL(r, v.urls, v.sign, it.ID)
	}
	return di
}

// renderOne renders a single item, looking up its parent's path.
func (v *itemView) renderOne(ctx context.Context, r *http.Request, items ferry.ItemStore, d *ferry.Drive, it *ferry.Item) (*driveItem, error) {
	var names []string
	if !it.IsRoot() {
		var err error
		if names, err = items.Path(ctx, it.ParentID); err != nil {
			return nil, fmt.Errorf("graph: path of %s: %w", it.ParentID, err)
		}
	}
	return v.render(r, d, it, names), nil
}

func orTime(t, def time.Time) time.Time {
	if t.IsZero() {
		return def
	}
	return t
}
