module tokenlimit/go_oracle

go 1.22
