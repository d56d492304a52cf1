DROP TABLE node_runs;
