package project

import "context"

// Get returns a project the user can see, with its id in canonical form; it is the
// cheap access check (one indexed lookup) for callers that only need to know
// whether the user may read the project, such as event subscriptions.
func (s *Service) Get(ctx context.Context, userID int64, projectID string) (Project, error) {
	id, err := parseID(projectID)
	if err != nil {
		return Project{}, err
	}
	return s.project(ctx, s.db, userID, id, "")
}
