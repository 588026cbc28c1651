"""The Vectora Inbox E2E toolkit: contexts, the embedded AWS, the workflow runner and its reports."""
