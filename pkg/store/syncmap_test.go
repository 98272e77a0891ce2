package store_test

import "sync"

type syncMap = sync.Map
