package state

import (
	"bufio"
	"context"
	"database/sql"
	"io"
)

// volumeJSON renders one volume as the JSON object of blk's output contract
// (the fields of volume.Volume). SQLite builds it in C: for a long list this is
// 3-4 times faster than scanning 18 columns a row through cgo and encoding them
// with reflection. volume's contract test keeps the two encodings equal.
const volumeJSON = `json_object(
	'uuid', v.uuid, 'name', v.name, 'backend', v.backend, 'size_bytes', v.size_bytes,
	'status', v.status, 'previous_status', v.previous_status,
	'thin', json(CASE WHEN v.thin THEN 'true' ELSE 'false' END),
	'source', v.source, 'path', v.path, 'created_at', v.created_at, 'updated_at', v.updated_at,
	'last_error', v.last_error, 'snapshot_count', coalesce(sc.n, 0),
	'attachment', CASE WHEN a.volume IS NULL THEN NULL ELSE json_object(
		'instance', a.instance, 'host', a.host, 'device', a.device,
		'device_path', a.device_path, 'attached_at', a.attached_at) END)`

// pgVolumeJSON is volumeJSON in PostgreSQL's words: row_to_json names
// each field after its column. The query wraps it as SELECT row_to_json(r)
// FROM (SELECT pgVolumeJSON FROM …) r.
const pgVolumeJSON = `v.uuid, v.name, v.backend, v.size_bytes, v.status, v.previous_status, v.thin,
	v.source, v.path, v.created_at, v.updated_at, v.last_error, coalesce(sc.n, 0) AS snapshot_count,
	CASE WHEN a.volume IS NULL THEN NULL ELSE json_build_object(
		'instance', a.instance, 'host', a.host, 'device', a.device,
		'device_path', a.device_path, 'attached_at', a.attached_at) END AS attachment`

// WriteVolumesJSON streams the volumes f selects to w as one JSON array,
// ordered by name, without holding them all in memory.
func (s *Store) WriteVolumesJSON(ctx context.Context, f VolumeFilter, w io.Writer) error {
	where, args := f.where()
	q := `SELECT ` + volumeJSON + volumeFrom + where + ` ORDER BY v.name`
	if s.db.pg {
		q = `SELECT row_to_json(r)::text FROM (SELECT ` + pgVolumeJSON + volumeFrom + where + `) r ORDER BY r.name`
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.WriteByte('[')
	var obj sql.RawBytes
	for n := 0; rows.Next(); n++ {
		if err := rows.Scan(&obj); err != nil {
			return err
		}
		if n > 0 {
			bw.WriteByte(',')
		}
		bw.Write(obj)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	bw.WriteString("]\n")
	return bw.Flush()
}
