module karsttests/common

go 1.26.0
