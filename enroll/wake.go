package enroll

// Wake wakes whoever waits for job id. A front-end that shares its store
// with others (JetStream key-value) calls it for the jobs that another
// front-end's recorder recorded.
func (s *Service) Wake(id string) { s.wake(id) }
