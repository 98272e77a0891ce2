package egress

import "io"

// limitedBody fails with ErrResponseTooLarge once more than remaining bytes are
// read. Unlike io.LimitReader it does not end the body silently at the cap, so a
// truncated response is never mistaken for a complete one.
type limitedBody struct {
	rc        io.ReadCloser
	remaining int64
}

// Read implements io.Reader.
func (b *limitedBody) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if b.remaining <= 0 {
		// The cap is reached: the body is too large if a single byte more exists.
		var probe [1]byte
		n, err := b.rc.Read(probe[:])
		if n > 0 {
			return 0, ErrResponseTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > b.remaining {
		p = p[:b.remaining]
	}
	n, err := b.rc.Read(p)
	b.remaining -= int64(n)
	return n, err
}

// Close implements io.Closer.
func (b *limitedBody) Close() error {
	return b.rc.Close()
}
