package state

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
)

// ConnectionInfo is how a compute host reaches a volume, as in Nova's
// block_device_mapping. It holds the CHAP secret: it lives only in this
// 0600 file and is never printed.
type ConnectionInfo struct {
	DriverVolumeType string `json:"driver_volume_type"` // iscsi or nfs
	TargetPortal     string `json:"target_portal"`
	TargetIQN        string `json:"target_iqn"`
	TargetLUN        int    `json:"target_lun"`
	TargetID         int    `json:"target_id"` // tgt's tid on the storage host
	InitiatorIQN     string `json:"initiator_iqn"`
	AuthMethod       string `json:"auth_method,omitempty"`
	AuthUsername     string `json:"auth_username,omitempty"`
	AuthPassword     string `json:"auth_password,omitempty"`
	DevicePath       string `json:"device_path,omitempty"`
	Bus              string `json:"bus"`
	ReadOnly         bool   `json:"read_only,omitempty"`
	// Boot: the disk is the domain's first boot device (<boot order='1'/>).
	Boot bool `json:"boot,omitempty"`
	// nfs: the export, where the compute host mounts it, the volume's file
	// under that mount (also DevicePath) and its format, always given.
	Export     string `json:"export,omitempty"`
	MountPoint string `json:"mount_point,omitempty"`
	File       string `json:"file,omitempty"`
	Format     string `json:"format,omitempty"`
}

// AttachmentRecord is the whole attachment row, for the workflows.
type AttachmentRecord struct {
	Volume     string
	Instance   string
	Host       string
	Device     string
	DevicePath string
	Status     string
	Step       string
	Conn       ConnectionInfo
}

// Reserve moves an available volume to attaching and records where it goes,
// in one transaction: two attaches of one volume cannot both win, nor two
// volumes take one device of an instance.
func (s *Store) Reserve(ctx context.Context, uuid string, a AttachmentRecord) (Volume, error) {
	v, _, err := s.reserve(ctx, uuid, a, "")
	return v, err
}

// ReserveOp is Reserve that also journals this process's op on the volume,
// in the same transaction: a volume attaching with no running operation
// is then always one whose attach was killed, never one about to journal.
func (s *Store) ReserveOp(ctx context.Context, uuid string, a AttachmentRecord, op string) (Volume, *Op, error) {
	return s.reserve(ctx, uuid, a, op)
}

func (s *Store) reserve(ctx context.Context, uuid string, a AttachmentRecord, op string) (Volume, *Op, error) {
	var moved int64
	var deviceTaken bool
	var o *Op
	err := s.tx(ctx, func(t tx) error {
		var err error
		if moved, err = casStatus(ctx, t, uuid, Available, Attaching); err != nil || moved == 0 {
			return err
		}
		conn, _ := json.Marshal(a.Conn)
		_, err = t.ExecContext(ctx, `INSERT INTO attachments (volume, instance, host, device, connection_info, status)
			VALUES (?, ?, ?, ?, ?, ?)`, uuid, a.Instance, a.Host, a.Device, string(conn), Attaching)
		if isUnique(err) {
			deviceTaken = true
			return errRollback
		}
		if err != nil || op == "" {
			return err
		}
		o, err = s.beginOp(ctx, t, op, uuid)
		return err
	})
	if err != nil && !errors.Is(err, errRollback) {
		return Volume{}, nil, err
	}
	v, gerr := s.Volume(ctx, uuid)
	if gerr != nil {
		return v, nil, gerr
	}
	if deviceTaken {
		return v, nil, &ConflictError{Volume: v.Name, Reason: fmt.Sprintf("cannot take device %s of %s: another volume holds it", a.Device, a.Instance)}
	}
	if moved == 0 {
		return v, nil, &ConflictError{Volume: v.Name, Status: v.Status, Holder: s.holder(ctx, uuid)}
	}
	return v, o, nil
}

var errRollback = errors.New("rollback")

// ReservedDevices lists the devices of instance on host that attachments
// hold, an attach in progress included: its disk is not in the domain yet.
func (s *Store) ReservedDevices(ctx context.Context, host, instance string) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT device FROM attachments WHERE host = ? AND instance = ? ORDER BY device`, host, instance)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var devs []string
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			return nil, err
		}
		devs = append(devs, d)
	}
	return devs, rows.Err()
}

// AttachmentsOn lists the attachments on host, whatever their status: an
// attach in progress holds what it uses (an NFS mount) from the moment it
// reserves the volume.
func (s *Store) AttachmentsOn(ctx context.Context, host string) ([]AttachmentRecord, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT volume, instance, host, device, device_path, status, step, connection_info
		FROM attachments WHERE host = ? ORDER BY volume`, host)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []AttachmentRecord
	for rows.Next() {
		var a AttachmentRecord
		var conn string
		if err := rows.Scan(&a.Volume, &a.Instance, &a.Host, &a.Device, &a.DevicePath, &a.Status, &a.Step, &conn); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(conn), &a.Conn); err != nil {
			return nil, fmt.Errorf("attachment of %s: connection info: %w", a.Volume, err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// Attachment reads the attachment of a volume, whatever its status.
func (s *Store) Attachment(ctx context.Context, uuid string) (AttachmentRecord, error) {
	var a AttachmentRecord
	var conn string
	err := s.db.QueryRowContext(ctx, `SELECT volume, instance, host, device, device_path, status, step, connection_info
		FROM attachments WHERE volume = ?`, uuid).Scan(&a.Volume, &a.Instance, &a.Host, &a.Device, &a.DevicePath, &a.Status, &a.Step, &conn)
	if errors.Is(err, sql.ErrNoRows) {
		return a, fmt.Errorf("attachment of %s: %w", uuid, ErrNotFound)
	}
	if err != nil {
		return a, err
	}
	return a, json.Unmarshal([]byte(conn), &a.Conn)
}

// UpdateAttachment records progress: the step reached and what is known of
// the connection, so a rerun or reconcile knows what exists.
func (s *Store) UpdateAttachment(ctx context.Context, a AttachmentRecord) error {
	conn, _ := json.Marshal(a.Conn)
	return s.tx(ctx, func(t tx) error {
		_, err := t.ExecContext(ctx, `UPDATE attachments SET step = ?, connection_info = ?, device_path = ? WHERE volume = ?`,
			a.Step, string(conn), a.DevicePath, a.Volume)
		return err
	})
}

// FinishAttach marks the attachment attached and the volume in-use.
func (s *Store) FinishAttach(ctx context.Context, uuid string) (Volume, error) {
	return s.endAttachment(ctx, uuid, Attaching, InUse, false)
}

// Unreserve undoes Reserve: the attachment goes, the volume is available.
func (s *Store) Unreserve(ctx context.Context, uuid string) (Volume, error) {
	return s.endAttachment(ctx, uuid, Attaching, Available, true)
}

// FinishDetach removes the attachment and makes the volume available.
func (s *Store) FinishDetach(ctx context.Context, uuid string) (Volume, error) {
	return s.endAttachment(ctx, uuid, Detaching, Available, true)
}

func (s *Store) endAttachment(ctx context.Context, uuid, from, to string, remove bool) (Volume, error) {
	var moved int64
	err := s.tx(ctx, func(t tx) error {
		var err error
		if moved, err = casStatus(ctx, t, uuid, from, to); err != nil || moved == 0 {
			return err
		}
		if remove {
			_, err = t.ExecContext(ctx, `DELETE FROM attachments WHERE volume = ?`, uuid)
		} else {
			_, err = t.ExecContext(ctx, `UPDATE attachments SET status = 'attached', step = 'attached', attached_at = ? WHERE volume = ?`, now(), uuid)
		}
		return err
	})
	if err != nil {
		return Volume{}, err
	}
	v, err := s.Volume(ctx, uuid)
	if err == nil && moved == 0 {
		err = &ConflictError{Volume: v.Name, Status: v.Status, Holder: s.holder(ctx, uuid)}
	}
	return v, err
}

// casStatus moves a volume from one status to another inside t, and says
// whether it was still in from.
func casStatus(ctx context.Context, t tx, uuid, from, to string) (int64, error) {
	res, err := t.ExecContext(ctx, `UPDATE volumes SET status = ?, previous_status = status, updated_at = ?
		WHERE uuid = ? AND status = ?`, to, now(), uuid, from)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
