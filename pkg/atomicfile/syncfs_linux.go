package atomicfile

import (
	"os"

	"golang.org/x/sys/unix"
)

const haveSyncFS = true

func syncfs(d *os.File) error { return unix.Syncfs(int(d.Fd())) }
