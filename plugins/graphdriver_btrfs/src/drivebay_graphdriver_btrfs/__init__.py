"""drivebay graph driver for btrfs: subvolumes, snapshots, qgroup quotas, diffs from generation numbers."""
