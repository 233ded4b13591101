-- The join blk volume list runs (state/volumes.go), for sqlite3 -json to print:
-- the reference bench/run.sh measures blk against.
SELECT v.uuid, v.name, v.backend, v.size_bytes, v.status, v.previous_status, v.thin,
	v.source, v.path, v.created_at, v.updated_at, v.last_error,
	coalesce(sc.n, 0) AS snapshot_count,
	a.instance, a.host, a.device, a.device_path, a.attached_at
 FROM volumes v
	LEFT JOIN attachments a ON a.volume = v.uuid AND a.status = 'attached'
	LEFT JOIN (SELECT volume, count(*) AS n FROM snapshots GROUP BY volume) sc ON sc.volume = v.uuid
 ORDER BY v.name;
