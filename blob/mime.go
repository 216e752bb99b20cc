package blob

import (
	"mime"
	"net/http"
	"path"
	"strings"
)

// octetStream is the type of bytes nothing more is known about.
const octetStream = "application/octet-stream"

// extTypes pins the types of common extensions, so that the answer does
// not depend on the host's mime.types files; other extensions fall back to
// mime.TypeByExtension. The values are the ones OneDrive reports.
var extTypes = map[string]string{
	".7z":   "application/x-7z-compressed",
	".avi":  "video/x-msvideo",
	".bmp":  "image/bmp",
	".css":  "text/css",
	".csv":  "text/csv",
	".doc":  "application/msword",
	".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
	".gif":  "image/gif",
	".gz":   "application/gzip",
	".heic": "image/heic",
	".htm":  "text/html",
	".html": "text/html",
	".ico":  "image/x-icon",
	".iso":  "application/x-iso9660-image",
	".jpeg": "image/jpeg",
	".jpg":  "image/jpeg",
	".js":   "text/javascript",
	".json": "application/json",
	".md":   "text/markdown",
	".mkv":  "video/x-matroska",
	".mov":  "video/quicktime",
	".mp3":  "audio/mpeg",
	".mp4":  "video/mp4",
	".odt":  "application/vnd.oasis.opendocument.text",
	".ogg":  "audio/ogg",
	".pdf":  "application/pdf",
	".png":  "image/png",
	".ppt":  "application/vnd.ms-powerpoint",
	".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
	".rar":  "application/vnd.rar",
	".svg":  "image/svg+xml",
	".tar":  "application/x-tar",
	".tif":  "image/tiff",
	".tiff": "image/tiff",
	".txt":  "text/plain",
	".wav":  "audio/wav",
	".webm": "video/webm",
	".webp": "image/webp",
	".xls":  "application/vnd.ms-excel",
	".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
	".xml":  "application/xml",
	".zip":  "application/zip",
}

// DetectMIME picks a file's mimeType: from the extension of name (case
// ignored), else from its first bytes head (see http.DetectContentType;
// an empty head is not sniffed), else application/octet-stream. Media
// type parameters such as charset are dropped, as Graph shows none.
func DetectMIME(name string, head []byte) string {
	if ext := strings.ToLower(path.Ext(name)); ext != "" && ext != "." {
		if t, ok := extTypes[ext]; ok {
			return t
		}
		if t := bareType(mime.TypeByExtension(ext)); t != "" {
			return t
		}
	}
	if len(head) > 0 {
		if t := bareType(http.DetectContentType(head)); t != "" {
			return t
		}
	}
	return octetStream
}

// bareType strips parameters from a media type: "text/plain; charset=utf-8"
// becomes "text/plain".
func bareType(t string) string {
	t, _, _ = strings.Cut(t, ";")
	return strings.ToLower(strings.TrimSpace(t))
}
