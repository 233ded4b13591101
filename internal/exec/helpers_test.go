package exec

import (
	"encoding/pem"
	"sync"
)

type syncMutex struct{ m sync.Mutex }

func pemBytes(b *pem.Block) []byte { return pem.EncodeToMemory(b) }
