// Command go_oracle prints what Go 1.22's encoding/json and regexp decide, as JSON, so that
// tokenlimit's tests can compare against it without Go. See README.md beside this file.
//
//	go_oracle tables  < /dev/null  > unicode tables of this Go (for tokenlimit/rules/data)
//	go_oracle verdicts < cases.json > verdicts.json
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"runtime"
	"sort"
	"unicode"
)

// RateLimitConfig is the service's own struct (llm-token-ratelimit-service-example).
type RateLimitConfig struct {
	RateLimitKeyRegex   string `json:"rate_limit_key_regex"`
	MaxTokens           int    `json:"max_tokens"`
	TokensPerFill       int    `json:"tokens_per_fill"`
	FillIntervalSecond  int    `json:"fill_interval_second"`
	RedisExpiredSeconds int    `json:"redis_expired_seconds"`
}

type cases struct {
	Regexes []string    `json:"regexes"`
	Pairs   [][2]string `json:"pairs"`
	// Configs are base64 in JSON ([]byte) so that invalid UTF-8 survives.
	Configs [][]byte `json:"configs"`
}

type regexVerdict struct {
	Regex string `json:"regex"`
	Error string `json:"error"`
}

type pairVerdict struct {
	Regex string `json:"regex"`
	Key   string `json:"key"`
	Match bool   `json:"match"`
}

type configVerdict struct {
	Config []byte            `json:"config"`
	Starts bool              `json:"starts"`
	Error  string            `json:"error"`
	Rules  []RateLimitConfig `json:"rules"`
}

func table(t *unicode.RangeTable) [][3]uint32 {
	out := [][3]uint32{}
	for _, r := range t.R16 {
		out = append(out, [3]uint32{uint32(r.Lo), uint32(r.Hi), uint32(r.Stride)})
	}
	for _, r := range t.R32 {
		out = append(out, [3]uint32{r.Lo, r.Hi, r.Stride})
	}
	return out
}

func tables(m map[string]*unicode.RangeTable) map[string][][3]uint32 {
	out := map[string][][3]uint32{}
	for name, t := range m {
		out[name] = table(t)
	}
	return out
}

func dumpTables() any {
	folds := [][2]int32{}
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if f := unicode.SimpleFold(r); f != r {
			folds = append(folds, [2]int32{r, f})
		}
	}
	sort.Slice(folds, func(i, j int) bool { return folds[i][0] < folds[j][0] })
	return map[string]any{
		"go":            runtime.Version(),
		"unicode":       unicode.Version,
		"categories":    tables(unicode.Categories),
		"scripts":       tables(unicode.Scripts),
		"fold_category": tables(unicode.FoldCategory),
		"fold_script":   tables(unicode.FoldScript),
		"simple_fold":   folds,
	}
}

func verdicts(in cases) any {
	out := map[string]any{"go": runtime.Version(), "unicode": unicode.Version}
	rv := []regexVerdict{}
	for _, s := range in.Regexes {
		v := regexVerdict{Regex: s}
		if _, err := regexp.Compile(s); err != nil {
			v.Error = err.Error()
		}
		rv = append(rv, v)
	}
	out["regexes"] = rv
	pv := []pairVerdict{}
	for _, p := range in.Pairs {
		re, err := regexp.Compile(p[0])
		if err != nil {
			continue // the regex's own verdict says so; there is nothing to match
		}
		pv = append(pv, pairVerdict{p[0], p[1], re.MatchString(p[1])})
	}
	out["pairs"] = pv
	cv := []configVerdict{}
	for _, c := range in.Configs {
		// What the service does at start-up: unmarshal, then compile every regex.
		v := configVerdict{Config: c, Starts: true}
		var rules []RateLimitConfig
		if err := json.Unmarshal(c, &rules); err != nil {
			v.Starts, v.Error = false, err.Error()
		} else {
			for _, r := range rules {
				if _, err := regexp.Compile(r.RateLimitKeyRegex); err != nil {
					v.Starts, v.Error = false, err.Error()
					break
				}
			}
			v.Rules = rules
		}
		cv = append(cv, v)
	}
	out["configs"] = cv
	return out
}

func main() {
	var result any
	switch {
	case len(os.Args) == 2 && os.Args[1] == "tables":
		result = dumpTables()
	case len(os.Args) == 2 && os.Args[1] == "verdicts":
		var in cases
		if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		result = verdicts(in)
	default:
		fmt.Fprintln(os.Stderr, "usage: go_oracle tables|verdicts")
		os.Exit(2)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(result); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
