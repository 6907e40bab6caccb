package chaos

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// mountTmpfs mounts a tmpfs of size bytes on dir (root only): the file
// system the disk-full fault fills.
func mountTmpfs(dir string, size int64) error {
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		return fmt.Errorf("mounting a %d-byte tmpfs on %s (the disk-full fault needs root): %w", size, dir, err)
	}
	return nil
}

// unmountTmpfs unmounts dir, lazily when a process still holds a file
// in it.
func unmountTmpfs(dir string) error {
	if err := syscall.Unmount(dir, 0); err != nil {
		if err2 := syscall.Unmount(dir, syscall.MNT_DETACH); err2 != nil {
			return fmt.Errorf("%v; lazy: %v", err, err2)
		}
	}
	return nil
}

// fillName is the file that takes the tmpfs's free space.
const fillName = ".chaos-fill"

// fill writes into dir until the file system is full; free removes
// what it wrote.
func fill(dir string) error {
	f, err := os.OpenFile(filepath.Join(dir, fillName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			return err
		}
	}
	// The last small pieces too, so that not even a short file fits.
	small := make([]byte, 512)
	for {
		if _, err := f.Write(small); err != nil {
			break
		}
	}
	return nil
}

func free(dir string) error { return os.Remove(filepath.Join(dir, fillName)) }
